"""Cold start to the first interactive frame: studyapp on 100,000 messages vs a bare Textual floor vs oterm.

Every app starts the same way: a fresh Python process (this file with ``--child KIND``) runs the app
headless (Textual's headless driver, 120x40) and exits as soon as Textual's ``Ready`` event arrives,
which Textual posts after the first full layout of the first screen, i.e. the first frame; the exit
happens after that frame is refreshed. The child writes the monotonic clock (system-wide on Linux) at
that moment to a file; the parent takes the clock just before spawning it, so "ready" is spawn to
first frame, all imports included. "exit" (spawn to process end) is shown too.

Kinds:
  studyapp      the real ``studyapp --data-dir DIR`` command (studyapp.cli), on a data dir of
                100,000 messages in 200 conversations; the most recent one (opened at start) has 10,000.
  floor         a bare Textual app with the same widgets (Header, sidebar OptionList, VerticalScroll of
                Markdown messages, TextArea, Footer) showing the same content: the 200 conversation
                titles and the newest page (PAGE_SIZE) of messages, read by the parent from the same database.
  floor-small   the same bare app with 5 short messages: what Textual alone costs.
  studyapp (no pandas), studyapp (no pandas/numpy)
                with ``--diagnose``: studyapp with pandas (and numpy) made unimportable: what
                sqlite-utils' optional import of them costs a start. Without pandas is what a
                participant's install looks like (numpy comes with spaCy, pandas only with the
                analysis extra). And, when bench_history.py has built it, studyapp on a copy of the
                1,000,000-message database (2,000 conversations): how the start grows with the history.
  oterm         oterm's App (``oterm.app.oterm.app``) from a separate virtualenv (``--oterm-python``),
                splash screen off, its own empty data dir. Not seeded with the history: oterm mounts
                every message of the open chat one by one and its store commits each message on its own
                connection, so 100,000 messages would measure oterm's design, not a start; with an empty
                store its number is a lower bound of its start.

Textual on the oterm side may come with ``textual-speedups`` (a compiled accelerator oterm depends on);
so the floor also runs under the oterm interpreter, and oterm's ratio is to that floor.

    .venv/bin/python bench/bench_startup.py [--runs 7] [--oterm-python /tmp/oterm-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = (120, 40)
READY_FILE_ENV = "STUDYAPP_BENCH_READY_FILE"
FLOOR_CONTENT_ENV = "STUDYAPP_BENCH_FLOOR_CONTENT"


# Child side: stdlib only at module level, so the child's cost is the app's own. ----------------------


def _exit_on_first_frame() -> None:
    """Make every Textual app run headless and exit right after its first frame."""
    from textual.app import App

    original_run = App.run

    def run(self: App[object], *args: object, **kwargs: object) -> object:
        kwargs["headless"] = True
        kwargs.setdefault("size", SIZE)
        return original_run(self, *args, **kwargs)  # type: ignore[arg-type]

    def on_ready(self: App[object], event: object) -> None:
        Path(os.environ[READY_FILE_ENV]).write_text(repr(time.monotonic()))
        self.call_after_refresh(self.exit)

    App.run = run  # type: ignore[method-assign]
    # An underscore handler on the base class runs before the app's own on_ready (Textual's MRO dispatch).
    App._on_ready = on_ready  # type: ignore[attr-defined]


def _floor_app(content: dict[str, list[str]]) -> object:
    from textual.app import App, ComposeResult
    from textual.containers import Horizontal, Vertical, VerticalScroll
    from textual.widgets import Button, Footer, Header, Markdown, OptionList, Static, TextArea

    class Floor(App[None]):
        CSS = """
        #body { height: 1fr; }
        #sidebar { width: 30; border-right: solid $primary-background; }
        #conversations { height: 1fr; }
        #conversation { height: 1fr; padding: 0 1; }
        .message { height: auto; margin: 1 0 0 0; }
        .role { text-style: bold; color: $accent; }
        TextArea { height: auto; min-height: 3; max-height: 10; border: tall $primary; }
        #status { height: 1; background: $panel; }
        """

        def compose(self) -> ComposeResult:
            yield Header()
            with Horizontal(id="body"):
                with Vertical(id="sidebar"):
                    yield Button("+ New conversation")
                    yield OptionList(*content["titles"], id="conversations")
                with Vertical():
                    with VerticalScroll(id="conversation"):
                        for role, text in zip(content["roles"], content["messages"], strict=True):
                            with Vertical(classes="message"):
                                yield Static(role, classes="role", markup=False)
                                yield Markdown(text)
                    yield TextArea(soft_wrap=True, show_line_numbers=False)
            yield Static("Model: local", id="status", markup=False)
            yield Footer()

        def on_mount(self) -> None:
            self.query_one(VerticalScroll).anchor()
            self.query_one(TextArea).focus()

    return Floor()


def child(kind: str, data_dir: str | None) -> None:
    _exit_on_first_frame()
    if kind.startswith("studyapp-no-"):
        # Diagnosis only: what sqlite-utils' optional pandas (and numpy) import costs the start; it imports
        # them whenever they are installed. A participant's install has numpy (spaCy needs it) but not
        # pandas (only the analysis extra brings it), which "no-pandas" reproduces.
        for module in kind.removeprefix("studyapp-no-").split("-"):
            sys.modules[module] = None  # type: ignore[assignment]
        kind = "studyapp"
    if kind == "studyapp":
        # The console script's own entry point (it keeps pandas out of the process).
        from studyapp.entry import main

        sys.argv = ["studyapp", "--data-dir", str(data_dir)]
        main()
    elif kind in ("floor", "floor-small"):
        content = json.loads(Path(os.environ[FLOOR_CONTENT_ENV]).read_text())
        _floor_app(content).run()  # type: ignore[attr-defined]
    elif kind == "oterm":
        from oterm.log import suppress_logging  # as oterm's own command does first

        suppress_logging()
        from oterm.app.oterm import app

        app.run()
    else:
        raise SystemExit(f"unknown kind {kind!r}")


# Parent side ------------------------------------------------------------------------------------------


def floor_content(data_dir: Path, small: bool) -> dict[str, list[str]]:
    if small:
        return {"titles": ["Breakfast ideas", "Trip to Lisbon", "Python question"],
                "roles": ["You", "Assistant"] * 2 + ["You"],
                "messages": ["Breakfast ideas?", "Try **overnight oats** with berries.", "Quick ones?",
                             "- yogurt\n- toast\n- fruit", "Thanks!"]}
    import sqlite3

    conn = sqlite3.connect(data_dir / "studyapp.db")
    titles = [r[0] for r in conn.execute("SELECT title FROM conversations ORDER BY updated_at DESC")]
    (newest,) = conn.execute("SELECT id FROM conversations ORDER BY updated_at DESC LIMIT 1").fetchone()
    from studyapp.tui.screens.chat import PAGE_SIZE

    rows = conn.execute("SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY n DESC LIMIT ?",
                        [newest, PAGE_SIZE]).fetchall()[::-1]
    conn.close()
    labels = {"user": "You", "assistant": "Assistant"}
    return {"titles": titles, "roles": [labels[r] for r, _ in rows], "messages": [c for _, c in rows]}


def spawn(python: str, kind: str, data_dir: Path | None, env: dict[str, str], tmp: Path) -> tuple[float, float]:
    """Run one child; (spawn to first frame, spawn to exit) in seconds."""
    ready_file = tmp / f"ready-{kind}"
    ready_file.unlink(missing_ok=True)
    command = [python, str(HERE / "bench_startup.py"), "--child", kind]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    child_env = {**os.environ, **env, READY_FILE_ENV: str(ready_file)}
    started = time.monotonic()
    done = subprocess.run(command, env=child_env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    ended = time.monotonic()
    if done.returncode != 0 or not ready_file.exists():
        raise RuntimeError(f"{kind} did not reach its first frame (exit {done.returncode}):\n"
                           f"{done.stderr.decode(errors='replace')[-3000:]}")
    return float(ready_file.read_text()) - started, ended - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--oterm-python", default="/tmp/oterm-venv/bin/python",
                        help="Python of a virtualenv with oterm installed (skipped when absent).")
    parser.add_argument("--diagnose", action="store_true",
                        help="Also start studyapp with pandas (and numpy) made unimportable: what they cost.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data_dir)
        return

    sys.path.insert(0, str(HERE))
    from _common import cache_dir, describe_ms, git_revision, machine, startup_history

    print(f"# bench_startup  {machine()}  (commit {git_revision()})")
    history = startup_history()
    if history.build_s is not None:
        print(f"built {history.messages:,} messages in {history.build_s:.0f} s")
    print(f"data dir {history.path}: {history.messages:,} messages, {history.conversations} conversations, "
          f"the open one {history.big_conversation_messages:,} messages")

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp_name:
        tmp = Path(tmp_name)
        floor_file, small_file = tmp / "floor.json", tmp / "floor-small.json"
        floor_file.write_text(json.dumps(floor_content(history.path, small=False)))
        small_file.write_text(json.dumps(floor_content(history.path, small=True)))
        # The studyapp child must not find a keyring/model config of the machine's user: its own home.
        home = tmp / "home"
        home.mkdir()
        kinds: list[tuple[str, str, str, Path | None, dict[str, str]]] = [
            ("studyapp", sys.executable, "studyapp", history.path, {"HOME": str(home)}),
            ("floor", sys.executable, "floor", None, {FLOOR_CONTENT_ENV: str(floor_file)}),
            ("floor-small", sys.executable, "floor-small", None, {FLOOR_CONTENT_ENV: str(small_file)}),
        ]
        if args.diagnose:
            kinds += [(f"studyapp (no {blocked.replace('-', '/')})", sys.executable, f"studyapp-no-{blocked}",
                       history.path, {"HOME": str(home)}) for blocked in ("pandas", "pandas-numpy")]
            big = cache_dir() / "history-1m"
            if (big / "built.json").exists():  # built by bench_history.py; a copy, as the app writes to it
                shutil.copytree(big, tmp / "history-1m")
                kinds.append(("studyapp (1M messages)", sys.executable, "studyapp", tmp / "history-1m",
                              {"HOME": str(home)}))
        oterm_python = Path(args.oterm_python)
        if oterm_python.exists():
            oterm_dir = tmp / "oterm"
            oterm_dir.mkdir()
            (oterm_dir / "config.json").write_text(json.dumps({"splash-screen": False}))
            kinds += [
                ("oterm", str(oterm_python), "oterm", None, {"OTERM_DATA_DIR": str(oterm_dir), "HOME": str(home)}),
                ("floor [oterm venv]", str(oterm_python), "floor", None, {FLOOR_CONTENT_ENV: str(floor_file)}),
            ]
        else:
            print(f"NOTE: oterm skipped: {oterm_python} does not exist. Install it in its own virtualenv:\n"
                  f"  python3.11 -m venv /tmp/oterm-venv && /tmp/oterm-venv/bin/pip install oterm")

        ready: dict[str, list[float]] = {k[0]: [] for k in kinds}
        exits: dict[str, list[float]] = {k[0]: [] for k in kinds}
        # One warm-up round (bytecode caches, page cache), then rounds that rotate the order so that a
        # burst of load from other processes does not land on one kind only.
        for round_no in range(args.runs + 1):
            order = kinds[round_no % len(kinds):] + kinds[:round_no % len(kinds)]
            for label, python, kind, data_dir, env in order:
                first_frame, exited = spawn(python, kind, data_dir, env, tmp)
                if round_no > 0:
                    ready[label].append(first_frame)
                    exits[label].append(exited)
            print(f"  round {round_no}{' (warm-up)' if round_no == 0 else ''} done, "
                  f"load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)

    print(f"\nspawn -> first frame ({args.runs} runs each, after one warm-up):")
    for label in ready:
        print(f"  {label:26s} median {statistics.median(ready[label]) * 1000:7.0f} ms   "
              f"min {min(ready[label]) * 1000:7.0f} ms   | spawn -> exit median "
              f"{statistics.median(exits[label]) * 1000:7.0f} ms")
    floor = statistics.median(ready["floor"])
    print(f"\nstudyapp / floor: {statistics.median(ready['studyapp']) / floor:.2f}x median "
          f"({min(ready['studyapp']) / min(ready['floor']):.2f}x min); aim: within 1.3x")
    small = statistics.median(ready["floor-small"])
    print(f"studyapp / floor-small: {statistics.median(ready['studyapp']) / small:.2f}x")
    if "oterm" in ready:
        oterm_floor = statistics.median(ready["floor [oterm venv]"])
        print(f"oterm / floor [oterm venv]: {statistics.median(ready['oterm']) / oterm_floor:.2f}x median "
              f"({min(ready['oterm']) / min(ready['floor [oterm venv]']):.2f}x min)"
              "  (oterm's store empty)")
        print(f"oterm / floor: {statistics.median(ready['oterm']) / floor:.2f}x")
    print(f"(full distributions: studyapp {describe_ms(ready['studyapp'])})")


if __name__ == "__main__":
    main()
