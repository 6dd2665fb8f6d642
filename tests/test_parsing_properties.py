"""Property-based tests (Hypothesis) of the parsers between a user and a sweep: the spec
syntax (``name:key=value,...``), configuration files and the ``vrbench run`` command line.

Whatever the input, the answer is a plan or a refusal whose one-line message names the
entry at fault (the option or the key, and the entry of a list): never a traceback. Inputs
are drawn from the pieces users type (names, parameters, separators, grids, numbers at and
past every limit) as well as from arbitrary text and bytes.
"""

from __future__ import annotations

import contextlib
import io
import math
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrbench import estimators, problems
from vrbench.bench.config import ConfigError, load_config, parse_config
from vrbench.bench.sweep import plan_sweep
from vrbench.cli import main
from vrbench.components import parse_specs
from vrbench.errors import VrbenchError

SETTINGS = settings(max_examples=80, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

PROBLEMS = ["bernoulli_toy", "gaussian_cosine", "frozenlake", "bandit_gaussian_10",
            "bernoulli_ising"]
ESTIMATORS = ["score_function", "rloo", "reparameterization"]
KEYS = ["t", "theta", "omega", "mu", "sigma", "horizon", "slippery", "seed", "D", "bogus", ""]
NUMBERS = ["0", "1", "2", "-1", "0.4", "2.5", "1e308", "1e-320", "inf", "-inf", "nan", "true",
           "9223372036854775807", "9223372036854775808", "18446744073709551616", "1e400",
           "100000", "100001", "1000000000", "1000000001", "1" * 5000]

# Text a shell can pass: anything but NUL.
text = st.text(st.characters(blacklist_characters="\0"), max_size=12)
number = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(NUMBERS), st.integers().map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr), text)


def parameters(name: str) -> list[str]:
    """The parameters of the component ``name`` (none for an unknown name)."""
    for registry in (problems.registry, estimators.registry):
        if name in registry:
            return list(registry.get(name).parameters())
    return []


@st.composite
def spec_text(draw, names: list[str]) -> str:
    """``name:key=value,...`` strings assembled from the pieces users type: mostly real
    names with their own parameters, sometimes unknown ones, at and past their limits."""
    entries = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.one_of(st.sampled_from(names), st.sampled_from(names),
                              st.sampled_from(["nope", ""]), text))
        keys = st.sampled_from(parameters(name) or KEYS) | st.sampled_from(KEYS)
        params = [f"{draw(keys)}=" + "|".join(draw(st.lists(number, min_size=1, max_size=3)))
                  for _ in range(draw(st.integers(0, 2)))]
        entries.append(name + (":" + ",".join(params) if params else ""))
    separator = draw(st.sampled_from([",", ", ", ",,", ":"]))
    return separator.join(entries)


def one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message, message


@SETTINGS
@given(st.one_of(spec_text(PROBLEMS + ESTIMATORS), text))
def test_a_spec_parses_to_components_or_is_refused_naming_them(written):
    """``parse_specs`` and building its components: specs, or a ``VrbenchError`` that
    names the component or parameter."""
    try:
        specs = parse_specs(written)
        for spec in specs:
            registry = estimators if spec.name in ESTIMATORS else problems
            registry.make(spec.name, spec.params)
    except VrbenchError as exc:
        one_line(str(exc))
        named = re.findall(r"'([^']*)'|(\w+)[:=]", str(exc))
        assert named, str(exc)


toml_scalar = st.one_of(
    st.integers(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), text,
    st.sampled_from(["cpu", "cuda:99", "results", ""]))
EDGES = [math.inf, -math.inf, math.nan, 0, -1, 1, 2, 1.5, 2**63 - 1, 2**63, 2**64, 10**12,
         1e300, 1e-300, True, "x", "", [], [0], [1, 1], [2**64], [1e300], [-1, 2]]
"""Values at and past the limits of every key."""
toml_value = st.recursive(
    st.one_of(st.sampled_from(EDGES), toml_scalar),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from([*KEYS, "name", "grid", "linspace",
                                                             "logspace"]), inner, max_size=3)),
    max_leaves=8)
spec_entry = st.one_of(
    spec_text(PROBLEMS + ESTIMATORS),
    st.sampled_from(PROBLEMS + ESTIMATORS).flatmap(lambda name: st.fixed_dictionaries(
        {"name": st.just(name)},
        optional={key: toml_value for key in parameters(name)[:6] or KEYS[:6]})),
    toml_value)
LIMITS = {
    "n_samples": st.lists(st.sampled_from([1, 2, 16, 100_000, 100_001, 0, -1, 2**63, 2**64]),
                          min_size=1, max_size=3),
    "seeds": st.lists(st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, 2**64, -(2**63),
                                       -(2**63) - 1]), min_size=1, max_size=3),
    "replicates": st.sampled_from([1, 2, 100, 10**9, 10**9 + 1, 2**63, 2**64]),
    "cell_timeout": st.sampled_from([math.inf, -math.inf, math.nan, 1e300, 1e-300, 0.005, 0.5,
                                     60, 604_800, 604_801, -1]),
    "jobs": st.sampled_from([0, 1, 2, 1024, 1025, 2**64]),
    "threads": st.sampled_from([0, 1, 2, 1024, 1025, 2**64]),
    "max_memory_mb": st.sampled_from([15, 16, 256, 2**20, 2**20 + 1, 2**64]),
    "device": st.sampled_from(["cpu", "cuda", "cuda:99999", "gpu"]),
    "output": st.just("out") | text,
}
"""Each key's values at, inside and past its limits."""
named = {key: st.lists(st.sampled_from(names), min_size=1, max_size=2)
         for key, names in (("problems", PROBLEMS), ("estimators", ESTIMATORS))}
config_data = st.fixed_dictionaries(
    {key: st.one_of(valid, valid, valid, st.lists(spec_entry, max_size=3), toml_value)
     for key, valid in named.items()},
    optional={key: st.one_of(limit, limit, limit, st.sampled_from(EDGES), toml_value)
              for key, limit in LIMITS.items()})
config_data = st.one_of(config_data, config_data, config_data,
                        config_data.map(lambda data: {**data, "bogus": 1}))
INT64 = range(-(2**63), 2**63)


@SETTINGS
@given(config_data)
def test_a_config_plans_or_is_refused_naming_the_file_and_key(data):
    """``parse_config`` and the plan: cells, or a refusal that starts with the file and
    names one of its keys."""
    try:
        config = parse_config(data, "sweep.toml")
    except ConfigError as exc:
        message = str(exc)
        one_line(message)
        assert message.startswith("sweep.toml: "), message
        assert any(f"'{key}'" in message for key in data), message
        return
    # What is accepted can be run and stored: finite, within int64, each value once.
    assert config.cell_timeout is None or 0 < config.cell_timeout <= 7 * 24 * 3600
    assert all(n in INT64 for n in [*config.n_samples, *config.seeds, config.replicates])
    assert len(set(config.n_samples)) == len(config.n_samples)
    assert len(set(config.seeds)) == len(config.seeds)
    try:
        cells, _ = plan_sweep(config, confirmed=False)
    except VrbenchError as exc:
        one_line(str(exc))
        return
    assert len({cell.key() for cell in cells}) == len(cells)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_file_is_a_config_or_a_refusal_naming_it(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("raw") / "sweep.toml"
    path.write_bytes(raw)
    try:
        load_config(path)
    except ConfigError as exc:
        one_line(str(exc))
        assert str(exc).startswith(f"{path}: ")


OPTIONS = {
    "-e": spec_text(ESTIMATORS), "-p": spec_text(PROBLEMS),
    "-n": st.lists(number, min_size=1, max_size=3).map(",".join),
    "-r": number, "--seed": st.lists(number, min_size=1, max_size=3).map(",".join),
    "-j": number, "--threads": number, "--max-memory": number, "--cell-timeout": number,
    "--device": st.one_of(st.sampled_from(["cpu", "cuda", "cuda:7", "tpu"]), text),
    "--scheduler": st.one_of(st.sampled_from(["", "not a url", "tcp://", ":1"]), text),
}
"""Each option of ``vrbench run`` that takes a value, as the user writes it (short form)."""

LONG = {"-e": "--estimators", "-p": "--problems", "-n": "--n-samples", "-r": "--replicates",
        "-j": "--jobs", "--max-memory": "--max-memory", "--seed": "--seed",
        "--threads": "--threads", "--cell-timeout": "--cell-timeout", "--device": "--device",
        "--scheduler": "--scheduler"}
KEY_OF = {"-n": "n_samples", "-r": "replicates", "--seed": "seeds", "-j": "jobs",
          "--max-memory": "max_memory_mb", "--cell-timeout": "cell_timeout", "-p": "problems",
          "-e": "estimators"}


@st.composite
def command_line(draw) -> tuple[list[str], list[str]]:
    """``vrbench run`` arguments (always -e and -p, so a plan stays small) and the options
    given."""
    chosen = ["-e", "-p", *draw(st.lists(st.sampled_from(list(OPTIONS)[2:]), max_size=4,
                                         unique=True))]
    args = [part for option in chosen for part in (option, draw(OPTIONS[option]))]
    return args, chosen


@SETTINGS
@given(command_line())
def test_the_command_line_plans_or_is_refused_naming_the_option(tmp_path_factory, drawn):
    args, chosen = drawn
    output = tmp_path_factory.mktemp("cli") / "out"
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["run", *args, "--dry-run", "-o", str(output)])
        except SystemExit as exit_:  # argparse's refusals
            code = exit_.code
    message = " ".join(errors.getvalue().split())
    assert code in (0, 2), (code, message)
    assert not output.exists()
    if code == 2:
        assert "Traceback" not in message, message
        names = [option for option in chosen] + [LONG[o] for o in chosen] + [
            KEY_OF[o] for o in chosen if o in KEY_OF] + ["combinations", "-n/--n-samples"]
        assert any(name in message for name in names), (args, message)
