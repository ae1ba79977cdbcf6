"""Every verb's user errors are one line and exit code 2 (design.md, Conventions; issue 20).

The verbs are found by walking the typer app, so a verb added later is tested with no change
here; the bad inputs are generated from each verb's declared parameters (wrong type, negative,
zero, NaN, inf, unknown option, missing argument, a path that does not exist). Everything runs
in-process through :func:`mien.cli.run`, and every case fails at parse time or at the verb's
first check, so the whole table takes seconds.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import typer
from typer.models import ArgumentInfo, OptionInfo

from mien.cli import app, run
from mien.cli.options import POSITIVE, Number


def verbs(typer_app: typer.Typer = app, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """(words, function) of every command registered on ``typer_app`` and its sub-apps."""
    found = []
    for info in typer_app.registered_commands:
        found.append(((*prefix, info.name or info.callback.__name__.replace("_", "-")), info.callback))
    for group in typer_app.registered_groups:
        found += verbs(group.typer_instance, (*prefix, group.name))
    return found


VERBS = verbs()


def declared(function) -> list[tuple[str, inspect.Parameter, object]]:
    """(name, parameter, typer info) of every parameter of a verb function."""
    return [(n, p, p.default) for n, p in inspect.signature(function).parameters.items()
            if isinstance(p.default, (OptionInfo, ArgumentInfo))]


def flag(name: str, info: OptionInfo) -> str:
    decls = [d for d in (info.param_decls or ()) if d.startswith("-")]
    return decls[0].split("/")[0] if decls else "--" + name.replace("_", "-")


def required_args(function) -> list[str]:
    """Words filling the verb's required arguments and options (a path that does not exist)."""
    words = []
    for name, _, info in declared(function):
        if info.default is ... and isinstance(info, ArgumentInfo):
            words.append("/nonexistent/mien-test")
        elif info.default is ... and isinstance(info, OptionInfo):
            words += [flag(name, info), "/nonexistent/mien-test"]
    return words


def bad_values(number: Number) -> list[str]:
    """Values outside the option's range: wrong type, fractional ints, below the range, NaN, inf."""
    r = number.range
    values = ["abc", "nan", "inf", "-inf"]
    if r.kind is int:
        values.append("1.5")
    if r.low is not None:
        below = r.low if r.low_open else r.low - 1
        values += [str(int(below) if r.kind is int else below), str(int(r.low) - 5 if r.kind is int else r.low - 5.0)]
    if r.high is not None:
        above = r.high if r.high_open else r.high + 1
        values.append(str(above))
    return values


def bad_outputs(check) -> list[tuple[str, str]]:
    """Outputs that cannot be written: under a file, a file for a folder, a folder for a file."""
    bad = [("under a file", f"{__file__}/out")]
    if check.output_folder is True:
        bad.append(("an existing file", __file__))
    if check.output_folder is False:
        bad.append(("an existing folder", str(Path(__file__).parent)))
    return bad


def cases() -> list[tuple[str, list[str]]]:
    out = []
    for words, function in VERBS:
        filled = required_args(function)
        label = " ".join(words)
        out.append((f"{label}: unknown option", [*words, *filled, "--no-such-option"]))
        if filled:
            out.append((f"{label}: missing argument", list(words)))
        for name, _, info in declared(function):
            if isinstance(info, OptionInfo) and isinstance(info.parser, Number):
                out += [(f"{label}: {flag(name, info)} {v}", [*words, *filled, flag(name, info), v])
                        for v in bad_values(info.parser)]
                out.append((f"{label}: {flag(name, info)} without a value", [*words, *filled, flag(name, info)]))
            if isinstance(info, OptionInfo) and hasattr(info.callback, "output_folder"):
                out += [(f"{label}: {flag(name, info)} {why}", [*words, *filled, flag(name, info), v])
                        for why, v in bad_outputs(info.callback)]
    out.append(("unknown verb", ["no-such-verb"]))
    groups = sorted({words[0] for words, _ in VERBS if len(words) > 1})
    out += [(f"{g}: unknown sub-command", [g, "no-such-verb"]) for g in groups]
    return out


CASES = cases()


@pytest.mark.parametrize("words", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_every_bad_input_is_one_line_and_exit_2(words, capsys):
    code = run(words)
    err = capsys.readouterr().err
    assert code == 2, (words, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


def test_the_table_covers_every_verb_and_every_number_option():
    """A new verb gets these cases for free, and an int or float option without a range fails here:
    declare it with ``mien.cli.options.option(default, RANGE, ...)``."""
    assert len(VERBS) >= 18
    bare = [f"{' '.join(w)} {name}" for w, f in VERBS for name, p, info in declared(f)
            if isinstance(info, OptionInfo) and p.annotation in (int, float, "int", "float")
            and not isinstance(info.parser, Number)]
    assert not bare, f"number options without a validated range: {bare}"
    unchecked = [f"{' '.join(w)} {name}" for w, f in VERBS for name, p, info in declared(f)
                 if isinstance(info, OptionInfo) and name == "out" and not hasattr(info.callback, "output_folder")]
    assert not unchecked, f"--out options not declared with mien.cli.options.output: {unchecked}"
    assert len(CASES) > 300


@pytest.mark.parametrize("words,function", [v for v in VERBS if any(
    info.default is ... and isinstance(info, ArgumentInfo) for _, _, info in declared(v[1]))],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_a_missing_input_path_is_one_line_and_exit_2(words, function, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is written where the tests run
    code = run([*words, *required_args(function)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir()), "a failed verb left output"


def test_number_options_accept_every_spelling_of_a_valid_value():
    parse = Number(POSITIVE)
    assert parse("1e-4") == 1e-4 and parse(".5") == 0.5 and parse("3") == 3.0 and parse(None) is None
    for bad in ("0", "nan", "inf", "1e400", "-1e-9"):
        with pytest.raises(ValueError, match="must be a finite number > 0"):
            parse(bad)


def test_ctrl_c_says_what_is_kept_and_exits_130(monkeypatch, capsys, tmp_path):
    import mien.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mien.train, "fit", interrupted)
    assert run(["train", "vae/tiny", "--out", str(tmp_path / "run")]) == 130
    assert capsys.readouterr().err.strip() == "interrupted; finished outputs are kept; resume with --resume"


def test_an_os_error_is_one_line(monkeypatch, capsys):
    from mien import zoo

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere/model.safetensors")

    monkeypatch.setattr(zoo, "get", denied)
    assert run(["zoo", "get", "anything"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use /somewhere/model.safetensors: Permission denied") and err.count("\n") == 1


@pytest.mark.parametrize("extra,says", [
    (["--precision", "bogus"], "Lightning refuses"),
    (["--strategy", "bogus"], "Lightning refuses"),
    (["--accelerator", "bogus"], "Lightning refuses"),
    (["--devices", "many"], "must be a number or 'auto'"),
    (["train.lr=.nan"], "train.lr must be a finite number > 0"),
    (["train.lr=-1"], "train.lr must be a finite number > 0"),
    (["data.batch_size=0"], "data.batch_size must be an integer >= 1"),
    (["train.betas=[2,3]"], r"train.betas must be a finite number in \[0, 1\)"),
    (["train.max_steps=0"], "train.max_steps must be an integer >= 1"),
    (["train.max_steps=-5"], "train.max_steps must be an integer >= 1"),
    (["train.save_every=-1"], "train.save_every must be an integer >= 0"),
    (["model.widthz=3"], "unknown key model.widthz"),  # fails after the run folder is made
])
def test_train_refuses_bad_flags_and_values_before_any_work(extra, says, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", "vae/tiny", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(says, err), err
    assert not out.exists(), "a failed run left its folder"


def test_train_checks_its_output_folder_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    for out, says in [(tmp_path / "file", "is a file"), (tmp_path / "file" / "run", "cannot write"),
                      (Path("/proc/mien-run"), "cannot write")]:
        assert run(["train", "vae/tiny", "--out", str(out), "train.max_steps=1"]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    assert (tmp_path / "file").read_text() == "mine"


def test_train_accepts_floats_as_users_type_them(monkeypatch, tmp_path):
    """YAML 1.1 reads 1e-4 as a string; the config takes it as the float it is."""
    import mien.train

    seen = {}
    monkeypatch.setattr(mien.train, "fit", lambda cfg, out, **kw: seen.setdefault("cfg", cfg))
    assert run(["train", "vae/tiny", "--out", str(tmp_path / "run"), "train.lr=1e-4", "train.betas=[.5, 9e-1]"]) == 0
    assert seen["cfg"].train.lr == 1e-4 and seen["cfg"].train.betas == [0.5, 0.9]
