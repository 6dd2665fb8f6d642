"""A deliberately wrong estimator: biased, yet claiming to be unbiased. `vrbench check` must
catch it."""

from dataclasses import dataclass

from vrbench.estimators import Estimator, weighted_score


@dataclass(frozen=True)
class DoubledScoreFunction(Estimator):
    """Twice the score-function estimate: E ĝ = 2 ∇J, although it claims to be unbiased."""

    family = "score function"
    unbiased = True

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        samples = problem.sample(theta, (replicates, n_samples), generator)
        return 2.0 * weighted_score(problem, theta, samples, problem.f(samples))
