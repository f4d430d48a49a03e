"""The README cannot drift from the code: every command it shows is run or checked here.

How each kind of README text is exercised:

* fenced ``bash`` blocks: every line is a command, run in order in one sandbox (a temporary
  folder holding what ``make run`` leaves behind, on a tiny demo corpus):
  ``gtzan ...`` runs for real through the CLI's entry point and must exit 0 (``gtzan ui``
  gets ``--dry-run``: it would serve forever); ``python -c`` runs in a subprocess;
  ``make TARGET`` must be a target that ``make -n`` accepts, with variables the Makefile
  uses and options that ``gtzan run`` accepts; ``dagster ...`` is parsed by Dagster's own
  command line (nothing runs) and the assets, partitions, jobs and schedules it names must
  exist in the code location; ``pip install -e '.[extra]'`` must name
  an extra of ``pyproject.toml``; ``python benchmarks/NAME.py ...`` must name a script whose
  ``--help`` lists every option the line gives (nothing is measured); ``export`` and ``source .venv/bin/activate`` set up the
  block's shell. Anything else fails the test: a new kind of command needs a checker here.
* fenced ``console`` blocks: each ``$ command`` runs as above, and the lines shown after it
  must appear in its output, in order (``...`` matches anything). A block whose output is
  only ``gtzan: error:`` lines must exit non-zero.
* fenced ``python`` blocks run in the sandbox.
* inline ``gtzan ...`` spans must parse (subcommand and options exist); inline ``make X``
  spans must name Makefile targets.
* the environment variables and model names the README lists must be the code's.

Each block is its own shell: ``export`` lasts until the end of its block. ``~`` is the
sandbox's home, which holds the files the README uses as "your" files: ``~/Music/song.mp3``
(stereo, 44.1 kHz), ``~/Music/intro.ogg`` (3 s, shorter than a window), ``~/Music/cover.jpg``
(not audio), and ``~/datasets/gtzan`` and ``~/gtzan-scale/corpus-1000`` (small corpora in the
Kaggle layout, the second standing for the one ``benchmarks/bench_scale.py`` writes).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from pipelines import cli, deployment, settings

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"
SHELL_LANGS = {"bash", "sh", "shell"}
#: Environment variables the README may name besides those of ``pipelines.settings``: the
#: scaled-out deployment's (``pipelines.deployment``), documented in "Running at scale".
EXTRA_VARS = set(deployment.ENV_VARS)


# ---------------------------------------------------------------------------------------
# parsing the README
# ---------------------------------------------------------------------------------------
@dataclass
class Command:
    line: str
    lineno: int
    expected: list[str] = field(default_factory=list)  # console blocks only


@dataclass
class Block:
    lang: str
    lineno: int
    text: str
    commands: list[Command]


def parse_blocks(text: str) -> list[Block]:
    blocks = []
    for m in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", text, re.M | re.S):
        lang, body = m[1], m[2]
        start = text.count("\n", 0, m.start()) + 2  # line number of the block's first line
        cmds: list[Command] = []
        if lang in SHELL_LANGS:
            pending, first = "", None
            for i, raw in enumerate(body.splitlines()):
                line = raw.rstrip()
                if first is None:
                    first = start + i
                if line.endswith("\\"):
                    pending += line[:-1] + " "
                    continue
                full = (pending + line).strip()
                pending = ""
                if full and not full.startswith("#"):
                    cmds.append(Command(full, first))
                first = None
        elif lang == "console":
            for i, raw in enumerate(body.splitlines()):
                if raw.startswith("$ "):
                    cmds.append(Command(raw[2:].strip(), start + i))
                elif raw.strip() and cmds:
                    cmds[-1].expected.append(raw.rstrip())
        blocks.append(Block(lang, start, body, cmds))
    return blocks


def prose(text: str) -> str:
    """The README without its fenced blocks."""
    return re.sub(r"^```.*?^```\s*$", "", text, flags=re.M | re.S)


def inline_spans(text: str) -> list[str]:
    return re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose(text))


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", MAKEFILE.read_text(), re.M))


def makefile_vars() -> set[str]:
    return set(re.findall(r"\$\((\w+)\)", MAKEFILE.read_text())) | {"DAGSTER_HOME"}


BLOCKS = parse_blocks(README.read_text())
TEXT = README.read_text()


# ---------------------------------------------------------------------------------------
# the sandbox: what `make run` leaves, on a tiny corpus
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import soxr

    from feature_store.demo import write_demo_corpus
    from feature_store.ingestion import ingest
    from feature_store.store import FeatureStore
    from training.report import write_report
    from training.train import ModelStore, TrainConfig, train_model

    root = tmp_path_factory.mktemp("readme")
    data = root / "data"
    audio = write_demo_corpus(data / "demo", songs_per_genre=4, duration=6.0)
    ingest(audio, data / "store")
    FeatureStore(data / "store").build(audio_root=audio, clip_seconds=[1, 5], workers=1)
    train_model(store_root=data / "store", model_root=data / "models", model="seed_cnn", clip_seconds=5,
                config=TrainConfig(epochs=1, seed=0))
    write_report(ModelStore(data / "models").runs(), data / "reports")

    music = root / "home" / "Music"
    music.mkdir(parents=True)
    y, sr = sf.read(audio / "reggae" / "reggae.00000.wav", dtype="float32")
    y44 = soxr.resample(np.concatenate([y, y]), sr, 44100).astype(np.float32)  # 12 s
    stereo = np.stack([y44, 0.7 * y44], axis=1)
    sf.write(music / "song.mp3", stereo, 44100, format="MP3", subtype="MPEG_LAYER_III")
    sf.write(music / "intro.ogg", stereo[: 3 * 44100], 44100, format="OGG", subtype="VORBIS")
    (music / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200))
    write_demo_corpus(root / "home" / "datasets" / "gtzan", songs_per_genre=2, duration=6.0, seed=7)
    write_demo_corpus(root / "home" / "gtzan-scale" / "corpus-1000", songs_per_genre=2, duration=6.0, seed=11)
    return root


def base_env(sandbox: Path) -> dict[str, str | None]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GTZAN_")}
    env.update(HOME=str(sandbox / "home"), GTZAN_WORKERS="1")
    return env


def expand(token: str, home: Path) -> str:
    if token == "~" or token.startswith("~/"):
        return str(home) + token[1:]
    if "=~/" in token:
        k, v = token.split("=", 1)
        return f"{k}={expand(v, home)}"
    return token


# ---------------------------------------------------------------------------------------
# running one command
# ---------------------------------------------------------------------------------------
@dataclass
class Outcome:
    code: int
    output: str


class Runner:
    """Runs README commands in the sandbox, one block (one shell) at a time."""

    def __init__(self, sandbox: Path) -> None:
        self.sandbox = sandbox
        self.home = sandbox / "home"
        self.ran: list[list[str]] = []

    def new_shell(self) -> None:
        self.env = base_env(self.sandbox)

    def run(self, cmd: Command) -> Outcome:
        tokens = [expand(t, self.home) for t in shlex.split(cmd.line, comments=True)]
        prefix: dict[str, str] = {}
        while tokens and re.match(r"^[A-Za-z_]\w*=", tokens[0]):
            k, v = tokens.pop(0).split("=", 1)
            prefix[k] = v
        redirect = None
        if ">" in tokens:
            i = tokens.index(">")
            redirect, tokens = self.sandbox / tokens[i + 1], tokens[:i]
        assert tokens, f"README line {cmd.lineno}: an empty command"
        for k in prefix:
            assert k in settings.ENV_VARS or k in EXTRA_VARS or k in makefile_vars(), \
                f"README line {cmd.lineno}: {k} is neither a GTZAN_* setting nor a Makefile variable"
        head = tokens[0]
        if head == "gtzan":
            return self._gtzan(tokens[1:], prefix, redirect, cmd)
        assert redirect is None, f"README line {cmd.lineno}: only gtzan output may be redirected"
        if head == "export":
            for t in tokens[1:]:
                k, v = t.split("=", 1)
                assert k in settings.ENV_VARS, f"README line {cmd.lineno}: unknown variable {k}"
                self.env[k] = v
            return Outcome(0, "")
        if head == "source":
            assert tokens[1:] == [".venv/bin/activate"], cmd.line
            assert re.search(r"^VENV \?= \.venv$", MAKEFILE.read_text(), re.M), "the Makefile's venv is not .venv"
            return Outcome(0, "")
        if head == "make":
            return self._make(tokens[1:], prefix, cmd)
        if head in ("python", ".venv/bin/python") and tokens[1:2] == ["-c"]:
            env = {**os.environ, **{k: v for k, v in {**self.env, **prefix}.items() if v is not None}}
            for k, v in {**self.env, **prefix}.items():
                if v is None:
                    env.pop(k, None)
            p = subprocess.run([sys.executable, "-c", tokens[2]], cwd=self.sandbox, env=env, capture_output=True,
                               text=True, timeout=300)
            return Outcome(p.returncode, p.stdout + p.stderr)
        if head in ("python", ".venv/bin/python") and tokens[1:2] and tokens[1].startswith("benchmarks/"):
            return self._benchmark(tokens[1:], cmd)
        if head == "dagster":
            return self._dagster(tokens[1:], cmd)
        if head in ("pip", ".venv/bin/pip") and tokens[1:3] == ["install", "-e"]:
            m = re.fullmatch(r"\.\[([\w,-]+)\]", tokens[3])
            assert m, f"README line {cmd.lineno}: expected pip install -e '.[extra]'"
            extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
            for extra in m[1].split(","):
                assert extra in extras, f"README line {cmd.lineno}: no extra {extra!r} in pyproject.toml"
            return Outcome(0, "")
        pytest.fail(f"README line {cmd.lineno}: no test knows how to check `{cmd.line}`; add a checker to "
                    f"tests/test_readme.py")

    def _benchmark(self, args: list[str], cmd: Command) -> Outcome:
        script = REPO / args[0]
        assert script.is_file(), f"README line {cmd.lineno}: no {args[0]}"
        p = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, f"README line {cmd.lineno}: {args[0]} --help failed: {p.stderr[-500:]}"
        for opt in (a for a in args[1:] if a.startswith("--")):
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", p.stdout), \
                f"README line {cmd.lineno}: {args[0]} has no option {opt}"
        return Outcome(0, p.stdout)

    def _gtzan(self, args: list[str], prefix: dict[str, str], redirect: Path | None, cmd: Command) -> Outcome:
        if args[:1] == ["ui"]:
            args = [*args, "--dry-run"]
        self.ran.append(args)
        env = {**self.env, **prefix}
        r = CliRunner().invoke(cli.main, args, env=env, prog_name="gtzan")
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        if redirect is not None:
            redirect.write_bytes(r.stdout_bytes)
            assert redirect.stat().st_size > 0, f"README line {cmd.lineno}: nothing written to {redirect.name}"
            if "--json" in args:
                json.loads(redirect.read_text())
            return Outcome(r.exit_code, r.stderr)
        return Outcome(r.exit_code, r.output)

    def _dagster(self, args: list[str], cmd: Command) -> Outcome:
        """Parse a ``dagster`` command with Dagster's own CLI, then check what it names.

        The options must exist (click parses them, nothing runs); the assets, partitions,
        jobs and schedules it names must exist in the code location.
        """
        from dagster._cli import cli as dagster_cli

        from pipelines.definitions import defs

        group, rest = dagster_cli, list(args)
        while isinstance(group, __import__("click").Group):
            name, rest = rest[0], rest[1:]
            assert name in group.commands, f"README line {cmd.lineno}: dagster has no command {name!r}"
            group = group.commands[name]
        with contextlib.chdir(REPO):  # the README's dagster commands run in the project folder
            ctx = group.make_context("dagster", list(rest), resilient_parsing=False)
        opts = ctx.params
        where = f"README line {cmd.lineno}"
        def as_list(v):
            return [v] if isinstance(v, str) else list(v)

        if opts.get("module_name"):
            assert as_list(opts["module_name"]) == ["pipelines.definitions"], where
        if opts.get("workspace"):
            assert as_list(opts["workspace"]) == ["workspace.yaml"], where
        keys = {k.to_user_string(): a for a in defs.assets for k in a.keys}
        if opts.get("select"):
            for key in opts["select"].split(","):
                assert key in keys, f"{where}: no asset {key!r}"
                if opts.get("partition"):
                    pdef = keys[key].partitions_def
                    assert pdef is not None and opts["partition"] in pdef.get_partition_keys(), \
                        f"{where}: asset {key} has no partition {opts['partition']!r}"
        if opts.get("config_json"):
            json.loads(opts["config_json"])
        if opts.get("job_name"):
            job = defs.resolve_job_def(opts["job_name"])
            if opts.get("partitions"):
                pdef = job.partitions_def
                for pk in opts["partitions"].split(","):
                    assert pdef is not None and pk in pdef.get_partition_keys(), f"{where}: {job.name} has no partition {pk!r}"
        if group.name == "start" and opts.get("schedule_name"):
            names = {sch.name for sch in defs.schedules or []}
            assert opts["schedule_name"] in names, f"{where}: no schedule {opts['schedule_name']!r}"
        return Outcome(0, "")

    def _make(self, args: list[str], prefix: dict[str, str], cmd: Command) -> Outcome:
        targets = [a for a in args if "=" not in a]
        assigns = dict(a.split("=", 1) for a in args if "=" in a)
        for t in targets:
            assert t in makefile_targets(), f"README line {cmd.lineno}: no target {t!r} in the Makefile"
        for k in assigns:
            assert k in makefile_vars(), f"README line {cmd.lineno}: the Makefile does not use {k}"
        if "RUN_ARGS" in assigns:
            help_text = run_help()
            for opt in re.findall(r"(--[\w-]+)", assigns["RUN_ARGS"]):
                assert opt in help_text, f"README line {cmd.lineno}: gtzan run has no {opt}"
        env = {**os.environ, **prefix}
        p = subprocess.run(["make", "-n", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        return Outcome(p.returncode, p.stdout + p.stderr)


_RUN_HELP: list[str] = []


def run_help() -> str:
    """``gtzan run --help``: the options that ``make run RUN_ARGS=...`` passes on."""
    if not _RUN_HELP:
        r = CliRunner().invoke(cli.main, ["run", "--help"], prog_name="gtzan")
        assert r.exit_code == 0, r.output
        assert re.search(r"^run:.*\n(\t.*\n)*\t.*/gtzan run \$\(RUN_ARGS\)$", MAKEFILE.read_text(), re.M), \
            "make run does not call gtzan run"
        _RUN_HELP.append(r.stdout)
    return _RUN_HELP[0]


def expect_lines(expected: list[str], output: str) -> str | None:
    """None if the expected lines appear in ``output`` in order (``...`` = anything), else why not."""
    actual = [ln.rstrip() for ln in output.splitlines()]
    pos = 0
    for exp in expected:
        pattern = re.compile(".*".join(re.escape(part) for part in exp.split("...")))
        while pos < len(actual) and not pattern.fullmatch(actual[pos]):
            pos += 1
        if pos == len(actual):
            return f"no line matches {exp!r}"
        pos += 1
    return None


# ---------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------
def test_every_readme_command_runs(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sandbox)
    runner = Runner(sandbox)
    for block in BLOCKS:
        runner.new_shell()
        if block.lang == "python":
            code = compile(block.text, f"README.md:{block.lineno}", "exec")
            with monkeypatch.context() as m, contextlib.redirect_stdout(io.StringIO()) as out:
                for k, v in runner.env.items():
                    if v is None:
                        m.delenv(k, raising=False)
                    else:
                        m.setenv(k, v)
                exec(code, {"__name__": "__readme__"})
            assert out.getvalue().strip(), f"README python block at line {block.lineno} printed nothing"
            continue
        for cmd in block.commands:
            res = runner.run(cmd)
            where = f"README line {cmd.lineno}: `{cmd.line}` exited {res.code}\n{res.output}"
            if block.lang == "console" and cmd.expected:
                only_errors = all(e.startswith("gtzan: error:") for e in cmd.expected)
                assert (res.code != 0) if only_errors else (res.code == 0), where
                why = expect_lines(cmd.expected, res.output)
                assert why is None, f"{where}\n{why}"
            else:
                assert res.code == 0, where
    # every subcommand is shown running somewhere
    ran = {a[0] for a in runner.ran} | {" ".join(a[:2]) for a in runner.ran if a[0] == "features"}
    wanted = {"demo", "ingest", "train", "report", "predict", "ui"} | {f"features {s}" for s in
                                                                      ("build", "describe", "query")}
    assert wanted <= ran, f"subcommands the README never runs: {sorted(wanted - ran)}"


def test_quickstart_starts_with_the_two_commands() -> None:
    quick = TEXT.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    first = parse_blocks(quick)[0]
    assert [c.line.split("#")[0].strip() for c in first.commands] == ["make run", "make test"]
    order = [c.line for b in parse_blocks(quick) for c in b.commands]
    assert order.index("make dev") < min(i for i, c in enumerate(order) if c.startswith("gtzan predict"))


def test_inline_commands_parse() -> None:
    spans = inline_spans(TEXT)
    gtzan = [s for s in spans if s == "gtzan" or s.startswith("gtzan ")]
    make = [s for s in spans if s.startswith("make ")]
    assert gtzan and make
    for span in gtzan:
        args = [a for a in shlex.split(span)[1:] if a != "..."]
        args = [a for a in args if not re.fullmatch(r"<\w+>|[A-Z]+\.*", a)]  # placeholders: <subcommand>, FILE...
        r = CliRunner().invoke(cli.main, [*args, "--help"], prog_name="gtzan")
        assert r.exit_code == 0, f"README mentions `{span}`, which does not parse: {r.output}"
    for span in make:
        for w in shlex.split(span)[1:]:
            if w.startswith("-"):  # make's own flags (`make -n`)
                continue
            if "=" in w:
                k, v = w.split("=", 1)
                assert k in makefile_vars(), span
                if k == "RUN_ARGS":
                    for opt in re.findall(r"(--[\w-]+)", v):
                        assert opt in run_help(), f"README mentions `{span}`: gtzan run has no {opt}"
            else:
                assert w in makefile_targets(), f"README mentions `{span}`, not a Makefile target"


def test_environment_variables_are_the_codes() -> None:
    named = set(re.findall(r"\bGTZAN_[A-Z_]+\b", TEXT))
    assert named - EXTRA_VARS <= set(settings.ENV_VARS), f"unknown variables: {named - EXTRA_VARS - set(settings.ENV_VARS)}"
    assert set(settings.ENV_VARS) <= named, f"variables the README does not document: {set(settings.ENV_VARS) - named}"
    table = TEXT.split("## The command line", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `(GTZAN_\w+)` \|", table, re.M))
    # the deployment's variables have their own table, in "Running at scale"
    assert rows == set(settings.ENV_VARS) - set(deployment.ENV_VARS)


def test_model_table_is_the_registry() -> None:
    from pipelines.settings import DEFAULT_MODELS
    from training.families import model_names

    concepts = TEXT.split("## Concepts", 1)[1].split("\n## ", 1)[0]
    table = concepts.split("| model | what it is |", 1)[1].split("\n\n", 1)[0]
    names = re.findall(r"^\| `(\w+)` \|", table, re.M)
    # the rule "Adding a model family" states: only declared models, and every model of the
    # default run (a new family's models are listed by `gtzan train --help`, from the registry)
    assert len(names) == len(set(names))
    assert set(names) <= set(model_names()), f"not declared: {set(names) - set(model_names())}"
    assert set(DEFAULT_MODELS) <= set(names), f"default models missing: {set(DEFAULT_MODELS) - set(names)}"
    assert "every model of\nthe default run (`pipelines.settings.DEFAULT_MODELS`)" in TEXT


def readme_views(text: str) -> list[tuple[str, str]]:
    """The (name, line) pairs of the views list in "Adding a feature view"."""
    section = text.split("## Adding a feature view", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\* `(\w+)`: (.+)$", section, re.M)


def test_views_list_is_the_registry() -> None:
    from feature_store.views import VIEWS

    expected = [(name, cls.title + (" (opt-in)" if cls.opt_in else "")) for name, cls in VIEWS.items()]
    assert readme_views(TEXT) == expected, "README's views list differs from the views' declarations"
    assert readme_views(TEXT.replace("* `timbre`", "* `chroma`")) != expected  # the check can fail


def test_adding_walkthroughs_are_true() -> None:
    """No promise of a table that does not exist, opt_in documented, no adapter to tell."""
    view = TEXT.split("## Adding a feature view", 1)[1].split("\n## ", 1)[0]
    family = TEXT.split("## Adding a model family", 1)[1].split("\n## ", 1)[0]
    assert "views table" not in TEXT and "must be known to" not in family
    assert "`opt_in = True`" in view and "Adding a view takes three files" in view
    files = view.split("Adding a view takes three files:", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    assert len(files.strip().splitlines()) == 3
    two = family.split("**A new family** is one new module and its test, two files:", 1)[1]
    assert len(two.split("```text", 1)[1].split("```", 1)[0].strip().splitlines()) == 2
    import ast

    from feature_store.views import _template

    tree = ast.parse(Path(_template.__file__).read_text())
    imported = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for a in node.names]
    assert imported and not [n for n in imported if n.startswith("_")], imported  # the template imports no private name


def test_the_report_facts_match_the_code() -> None:
    from training.evaluate import index_of_max
    from training.report import STUDY_RESULTS

    # "the published numbers (42 % for the CNN at 30 s)"
    assert "42 % for the CNN at 30 s" in TEXT and STUDY_RESULTS["seed_cnn"][30] == 0.42
    # "returns the *last* class whose probability beats class 0's"
    assert index_of_max([0.1, 0.6, 0.3]) == 2
    assert "443/197/290" in TEXT
    from feature_store.datasets.gtzan import fault_filtered_lists

    lists = fault_filtered_lists()
    assert [len(lists[p]) for p in ("train", "valid", "test")] == [443, 197, 290]
    assert any("jazz.00054" in s for s in lists["train"])


def test_readme_checker_catches_drift(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself fails on commands that do not match the code."""
    monkeypatch.chdir(sandbox)
    runner = Runner(sandbox)
    runner.new_shell()
    assert runner.run(Command("gtzan features query --clip-seconds 5 --genre jazz --colour", 1)).code == 2
    with pytest.raises(AssertionError, match="no target 'deploy'"):
        runner.run(Command("make deploy", 1))
    with pytest.raises(AssertionError, match="no extra 'tpu'"):
        runner.run(Command("pip install -e '.[tpu]'", 1))
    with pytest.raises(pytest.fail.Exception, match="no test knows how to check"):
        runner.run(Command("curl https://example.org | sh", 1))
    assert expect_lines(["gtzan: error: unknown genre ..."], "gtzan: error: unknown genre 'x'") is None
    assert expect_lines(["a", "c"], "a\nb\nc") is None
    assert expect_lines(["c", "a"], "a\nb\nc") is not None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("dagster asset materialize -m pipelines.definitions --select mel_features --partition 7", "no partition '7'"),
        ("dagster asset materialize -m pipelines.definitions --select mel_feature", "no asset 'mel_feature'"),
        ("dagster job backfill -w workspace.yaml -j training_job --partitions 30|cnnx --noprompt", "has no partition"),
        ("dagster schedule start -w workspace.yaml daily_refresh", "no schedule 'daily_refresh'"),
        ("dagster assets materialize", "dagster has no command 'assets'"),
    ],
)
def test_dagster_checker_catches_drift(sandbox: Path, line: str, message: str) -> None:
    runner = Runner(sandbox)
    runner.new_shell()
    with pytest.raises(AssertionError, match=message):
        runner.run(Command(line, 1))
