"""Putting a new dialogue model live: `tipline flows train` / `flows reload` and the swap.

The swap runs on the real stack (Rasa + action server + gateway, Twilio faked at the wire)
while simulated reporters text continuously: no message may be lost, answered twice, answered
out of order or held up, and a changed model must actually answer afterwards. Bad edits and a
model that cannot load must leave the live bot exactly as it was.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from bot.app import create_app
from bot.runner import (
    FlowsProblemsError,
    NoRunnerError,
    Prepared,
    RasaProcess,
    SwapError,
    live_dialogue,
    prepare,
    publish_dialogue,
    rasa_environment,
    reload_flows,
    start_rasa_processes,
    stop_all,
    swap_dialogue,
    train_flows,
    wait_for_rasa,
)
from config import Settings
from config.settings import PROJECT_DIR
from nlu.build import PROJECT_DIR as DIALOGUE_PROJECT_DIR
from nlu.runtime import TrainingOutputFilter
from storage.db import Database, make_engine, migrate
from storage.runtime import DIALOGUE, RuntimeSetting, put_setting
from tests.conftest import make_settings, make_twilio_form, twilio_signature
from tests.fakes import FakeTwilioApi, Router
from tests.stack import Stack, free_port

RECEIPT = re.compile(r"\b([A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4})\b")
VARIANT_WHERE = "Where exactly did it happen (v2)? A village, street or landmark is enough."


# --- the stack, keeping hold of its Rasa server so that a test can swap it ----------------


@dataclass
class ReloadStack:
    stack: Stack
    settings: Settings
    prepared: Prepared
    current: RasaProcess  # the live Rasa server; a swap replaces it
    db: Database
    tmp: Path


@pytest.fixture(scope="module")
def reload_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReloadStack]:
    """tests/stack.py's run_stack, plus what `tipline run` does for reloads: the live server
    published in the database, and the Rasa process at hand."""
    tmp = tmp_path_factory.mktemp("reload")
    gateway_port, rasa_port, actions_port = free_port(), free_port(), free_port()
    settings = make_settings(
        tmp,
        rasa={"url": f"http://127.0.0.1:{rasa_port}", "token": "rasa-token-for-tests",
              "tracker_store_url": f"sqlite:///{tmp / 'rasa-trackers.db'}", "timeout_seconds": 30},
        actions={"token": "actions-token-for-tests", "port": actions_port},
    )
    prepared = prepare(settings)
    # Before the gateway starts, as `tipline run` does: two migrations at once collide.
    migrate(settings.database.url)
    db = Database(make_engine(settings.database.url))
    twilio = FakeTwilioApi()
    app = create_app(settings, transport=Router({"api.twilio.com": twilio}, passthrough=True))
    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=gateway_port, log_config=None, access_log=False,
        lifespan="on",
    ))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    log_dir = tmp / "logs"
    processes: list[subprocess.Popen[bytes]] = []
    holder: ReloadStack | None = None
    try:
        while not server.started:
            time.sleep(0.05)
        processes = start_rasa_processes(
            settings, prepared, gateway_url=gateway_url, rasa_port=rasa_port,
            actions_port=actions_port, log_dir=log_dir,
        )
        wait_for_rasa(settings.rasa.url, settings.rasa.token.get_secret_value(), processes=processes)
        current = RasaProcess(processes[1], settings.rasa.url, prepared.fingerprint,
                              log_dir / "rasa.log", rasa_environment(settings, gateway_url))
        publish_dialogue(db, current)
        holder = ReloadStack(Stack(settings, gateway_url, twilio, log_dir, app), settings,
                             prepared, current, db, tmp)
        yield holder
    finally:
        stop_all([processes[0], holder.current.process] if holder else processes)
        server.should_exit = True
        thread.join(timeout=30)
        db.dispose()


# --- simulated reporters --------------------------------------------------------------------


def _step_checks() -> list[tuple[str, Callable[[str], bool]]]:
    """One English tip: what each message says, and how to recognise the answer to it."""
    return [
        ("Hello", lambda reply: "What happened" in reply),
        ("Two men broke into the pharmacy and took the safe",
         lambda reply: "Where" in reply),
        ("Kibera, near the old market", lambda reply: "When" in reply),
        ("this morning", lambda reply: "danger right now" in reply),
        ("2", lambda reply: "Shall we send it" in reply),
        ("1", lambda reply: RECEIPT.search(reply) is not None),
    ]


@dataclass
class Exchange:
    number: str
    step: int
    text: str
    sent_at: float
    replied_at: float | None = None
    reply: str = ""


@dataclass
class Reporters:
    """Threads that each play reporters one after the other, one full tip each, sending the
    next message as soon as the previous one is answered."""

    stack: Stack
    count: int
    stop: threading.Event = field(default_factory=threading.Event)
    exchanges: list[Exchange] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for index in range(self.count):
            thread = threading.Thread(target=self._play, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _play(self, index: int) -> None:
        tip = 0
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                number = f"+2547{index:02d}{tip:05d}"
                tip += 1
                for step, (text, _check) in enumerate(_step_checks()):
                    if self.stop.is_set() and step == 0:
                        break
                    if not self._exchange(http, number, step, text):
                        return

    def _exchange(self, http: httpx.Client, number: str, step: int, text: str) -> bool:
        form = make_twilio_form(body=text, from_=number)
        exchange = Exchange(number, step, text, time.monotonic())
        with self._lock:
            self.exchanges.append(exchange)
        before = len(self.stack.twilio.bodies_to(number))
        response = http.post(f"{self.stack.gateway_url}/webhooks/sms", data=form,
                             headers={"X-Twilio-Signature": twilio_signature(form)})
        if response.status_code != 200:
            self.errors.append(f"{number} step {step}: webhook answered {response.status_code}")
            return False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            bodies = self.stack.twilio.bodies_to(number)
            if len(bodies) > before:
                exchange.replied_at = time.monotonic()
                exchange.reply = bodies[before]
                return True
            time.sleep(0.02)
        self.errors.append(f"{number} step {step}: no reply within 60 s")
        return False


def variant_project(tmp: Path) -> Path:
    """A copy of the dialogue project in which one English question reads differently."""
    project = tmp / "nlu" / "project"
    shutil.copytree(DIALOGUE_PROJECT_DIR, project)
    english = project / "responses" / "en.yml"
    text, replaced = re.subn(r'(utter_ask_tip_where:\n  text: )".*"', rf'\1"{VARIANT_WHERE}"',
                             english.read_text(encoding="utf-8"))
    assert replaced == 1, "utter_ask_tip_where not found where expected in en.yml"
    english.write_text(text, encoding="utf-8")
    return project


# --- the swap under load --------------------------------------------------------------------


@pytest.mark.e2e
def test_reload_under_steady_traffic_loses_nothing_and_serves_the_new_model(
    reload_stack: ReloadStack,
) -> None:
    rs = reload_stack
    shown = io.StringIO()
    trained = train_flows(rs.settings, project_dir=variant_project(rs.tmp / "variant"),
                          root=rs.tmp / "variant", display=shown)
    print(f"\nvariant model {trained.prepared.fingerprint}: "
          f"{'cached' if trained.skipped else 'trained'} in {trained.seconds:.0f} s")
    if not trained.skipped:
        assert "Training TfidfIntentClassifier..." in shown.getvalue()
    assert trained.prepared.fingerprint != rs.current.model
    old = rs.current

    # One conversation is half done on the old server, and is finished on the new one.
    straddler, steps = "+254788000001", _step_checks()
    for text, answers in steps[:2]:
        reply = rs.stack.sms(straddler, text)
        assert answers(reply) and "(v2)" not in reply, reply

    reporters = Reporters(rs.stack, count=4)
    reporters.start()
    time.sleep(3)  # traffic flowing on the old server
    published_at: list[float] = []

    def heard(message: str) -> None:
        print(f"  swap: {message}")
        if "is live" in message:
            published_at.append(time.monotonic())

    swap_started = time.monotonic()
    new = swap_dialogue(rs.settings, trained.prepared, current=old, db=rs.db, say=heard)
    rs.current = new
    swap_seconds = time.monotonic() - swap_started
    time.sleep(3)  # and on the new one
    for text, answers in steps[2:]:
        reply = rs.stack.sms(straddler, text)
        assert answers(reply), reply
        if text == "2":  # the summary: what was said before the switch is still known
            assert steps[1][0] in reply and steps[2][0] in reply, reply
    reporters.finish()
    time.sleep(1.5)  # a late duplicate would arrive now

    assert not reporters.errors, reporters.errors
    # The old server is gone, the new one is published and serves the new model.
    assert old.process.poll() is not None
    assert new.process.poll() is None
    assert new.url != old.url
    live = live_dialogue(rs.db)
    assert live is not None and live["model"] == trained.prepared.fingerprint
    assert live["url"] == new.url

    exchanges = reporters.exchanges
    by_number: dict[str, list[Exchange]] = {}
    for exchange in exchanges:
        by_number.setdefault(exchange.number, []).append(exchange)
    checks = _step_checks()
    for number, mine in by_number.items():
        # Exactly one reply per message: nothing lost, nothing answered twice.
        bodies = rs.stack.twilio.bodies_to(number)
        assert len(bodies) == len(mine), (number, bodies)
        # In order: each reply answers its own message (the dialogue went on, step by step).
        for exchange, body in zip(mine, bodies, strict=True):
            assert exchange.reply == body
            assert checks[exchange.step][1](body), (number, exchange.step, body)
    delays = [e.replied_at - e.sent_at for e in exchanges if e.replied_at is not None]
    assert len(delays) == len(exchanges)
    during = [e.replied_at - e.sent_at for e in exchanges if e.replied_at is not None
              and swap_started <= e.sent_at <= swap_started + swap_seconds]
    print(f"  {len(exchanges)} messages from {len(by_number)} reporters; swap took "
          f"{swap_seconds:.1f} s ({len(during)} messages during it); max reply delay "
          f"{max(delays):.2f} s overall, {max(during, default=0):.2f} s during the swap; "
          f"median {sorted(delays)[len(delays) // 2]:.2f} s")
    assert max(delays) < 5.0
    assert len(during) >= 10, "the swap did not happen under traffic"

    # Questions asked before the switch came from the old model, after it from the new one.
    assert published_at
    where = [e for e in exchanges if e.step == 1]
    before = [e for e in where if e.replied_at is not None and e.replied_at < published_at[0]]
    after = [e for e in where if e.sent_at > published_at[0] + 1.5]
    assert before and after
    assert all("(v2)" not in e.reply for e in before)
    assert all("(v2)" in e.reply for e in after)


@pytest.mark.e2e
def test_a_model_that_cannot_load_never_goes_live(reload_stack: ReloadStack) -> None:
    rs = reload_stack
    before = rs.db.run_sync(lambda session: session.get(RuntimeSetting, DIALOGUE))
    assert before is not None
    broken = rs.tmp / "broken" / "0000deadbeef0000dead.tar.gz"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(os.urandom(4096))
    live_server = rs.current
    with pytest.raises(SwapError) as failure:
        swap_dialogue(rs.settings, Prepared(rs.prepared.env, broken, "0000deadbeef0000dead"),
                      current=live_server, db=rs.db, say=lambda message: None)
    assert failure.value.log is not None and failure.value.log.exists()
    print(f"\n  refused: {failure.value}")
    after = rs.db.run_sync(lambda session: session.get(RuntimeSetting, DIALOGUE))
    assert after is not None
    assert (after.value, after.updated_at) == (before.value, before.updated_at)
    assert live_server.process.poll() is None
    assert "What happened" in rs.stack.sms("+254799000001", "Hello")


# --- bad edits never reach the running bot --------------------------------------------------


def _copy_project(tmp: Path) -> Path:
    project = tmp / "nlu" / "project"
    shutil.copytree(DIALOGUE_PROJECT_DIR, project)
    return project


def _break_yaml(project: Path) -> tuple[str, int]:
    path = project / "responses" / "en.yml"
    lines = path.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("utter_ask_tip_where:"))
    lines[index + 1] = "  text: Where did it happen: which street?"  # ': ' needs quotes
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "nlu/project/responses/en.yml", index + 2


def _unknown_intent(project: Path) -> tuple[str, int]:
    path = project / "data" / "rules.yml"
    lines = path.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip() == "- intent: give_tip")
    lines[index] = lines[index].replace("give_tip", "give_tipp")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "nlu/project/data/rules.yml", index + 1


def _missing_translation(project: Path) -> tuple[str, int]:
    path = project / "responses" / "fr.yml"
    text = path.read_text(encoding="utf-8")
    text, removed = re.subn(r"utter_ask_tip_where:\n  text: .*\n", "", text)
    assert removed == 1
    path.write_text(text, encoding="utf-8")
    english = (project / "responses" / "en.yml").read_text(encoding="utf-8").splitlines()
    line = next(i for i, line in enumerate(english) if line.startswith("utter_ask_tip_where:"))
    return "nlu/project/responses/en.yml", line + 1  # at the original that lacks it


@pytest.mark.parametrize("edit", [_break_yaml, _unknown_intent, _missing_translation],
                         ids=["yaml-syntax", "unknown-intent", "missing-translation"])
def test_reload_refuses_a_bad_edit_and_the_live_model_stays(
    tmp_path: Path, edit: Callable[[Path], tuple[str, int]],
) -> None:
    settings = make_settings(tmp_path)
    migrate(settings.database.url)
    db = Database(make_engine(settings.database.url))
    try:
        live = {"url": "http://127.0.0.1:5005", "model": "live-model", "since": "2026-01-01"}
        db.run_sync(lambda session: put_setting(session, key=DIALOGUE, value=live))
        before = db.run_sync(lambda session: session.get(RuntimeSetting, DIALOGUE))
        project = _copy_project(tmp_path)
        file, line = edit(project)
        with pytest.raises(FlowsProblemsError) as refused:
            reload_flows(settings, project_dir=project, root=tmp_path, say=lambda message: None)
        reported = [str(problem) for problem in refused.value.problems]
        print("\n  " + "\n  ".join(reported))
        assert any(p.startswith(f"{file}:{line}: ") for p in reported), reported
        after = db.run_sync(lambda session: session.get(RuntimeSetting, DIALOGUE))
        assert after is not None and before is not None
        assert (after.value, after.updated_at) == (before.value, before.updated_at)
        assert not (settings.data_dir / "reload-request.json").exists()
    finally:
        db.dispose()


def test_reload_without_a_runner_says_so(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(NoRunnerError, match="no `tipline run` is running"):
        reload_flows(settings, say=lambda message: None)
    (tmp_path / "run.pid").write_text("999999999\n")  # a runner that has ended
    with pytest.raises(NoRunnerError, match="has ended"):
        reload_flows(settings, say=lambda message: None)


# --- `tipline flows train` ------------------------------------------------------------------


def test_flows_train_skips_when_nothing_changed(tmp_path: Path) -> None:
    tipline = Path(sys.executable).with_name("tipline")
    env = {**os.environ, "TIPLINE_DATA_DIR": str(tmp_path)}

    def train() -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        result = subprocess.run([str(tipline), "flows", "train"], cwd=PROJECT_DIR, env=env,
                                capture_output=True, text=True, timeout=900, check=False)
        return result, time.monotonic() - started

    first, first_seconds = train()
    assert first.returncode == 0, first.stdout + first.stderr
    second, second_seconds = train()
    assert second.returncode == 0, second.stdout + second.stderr
    print(f"\n  first call {first_seconds:.1f} s, second {second_seconds:.1f} s:\n  "
          + second.stdout.strip().replace("\n", "\n  "))
    assert "training skipped" in second.stdout
    assert "Running Rasa's validation" not in second.stdout  # done once per fingerprint
    fingerprint = re.search(r"model (\w{20})", second.stdout)
    assert fingerprint and fingerprint.group(1) in first.stdout


def test_training_output_filter_reads_phases_and_tqdm_epochs() -> None:
    phases: list[str] = []
    epochs: list[tuple[int, int]] = []
    output = TrainingOutputFilter(on_phase=phases.append,
                                  on_epochs=lambda done, total: epochs.append((done, total)))
    recorded = (
        b"/x/rasa/shared/utils/io.py:100: UserWarning: The utterance 'utter_x' is not used\n"
        b"2026-11-21 01:04:25 INFO     rasa.cli.train  - Started validating domain and "
        b"training data...\n"
        b"2026-11-21 01:04:28 INFO     rasa.engine.training.hooks  - Starting to train "
        b"component 'DIETClassifier'.\n"
        b"Epochs:   0%|          | 0/100 [00:00<?, ?it/s]\r"
        b"Epochs:   1%|          | 1/100 [00:02<04:18,  2.61s/it]\r"
        b"Epochs:   1%|          | 1/100 [00:02<04:18,  2.61s/it, t_loss=4.9, i_acc=0.403]\r"
        b"Epochs:  99%|\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96"
        b"\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x89| 99/100 [00:13<00:00]\r"
        b"Epochs: 100%|\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96"
        b"\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88| 100/100 [00:13<00:00]\n"
        b"Processed trackers:   0%|          | 0/20 [00:00<?, ?it/s]\r"
        b"2026-11-21 01:04:43 ERROR    rasa.something  - It broke.\n"
        b"\x1b[92mYour Rasa model is trained and saved at 'x.tar.gz'.\x1b[0m\n"
    )
    for start in range(0, len(recorded), 7):  # arbitrary chunking, as a pipe delivers it
        output.feed(recorded[start:start + 7])
    output.close()
    assert phases == ["Validating the training data...", "Training DIETClassifier...",
                      "Rasa: It broke.", "Model saved."]
    assert epochs == [(0, 100), (1, 100), (99, 100), (100, 100)]


# --- the whole path: `tipline run` owns the servers, `tipline flows reload` signals it --------


@pytest.mark.e2e
def test_flows_reload_signals_the_running_tipline_run(tmp_path: Path) -> None:
    """`tipline run` and `tipline flows reload` as an administrator runs them. The reload's
    configuration has fewer languages, which makes a different model (a real swap)."""
    tipline = str(Path(sys.executable).with_name("tipline"))
    rasa_port, gateway_port = free_port(), free_port()
    env = {
        **os.environ,
        "TIPLINE_DATA_DIR": str(tmp_path),
        "TIPLINE_DATABASE__URL": f"sqlite:///{tmp_path / 'tipline.db'}",
        "TIPLINE_RASA__URL": f"http://127.0.0.1:{rasa_port}",
        "TIPLINE_RASA__TRACKER_STORE_URL": f"sqlite:///{tmp_path / 'rasa-trackers.db'}",
        "TIPLINE_ACTIONS__PORT": str(free_port()),
        "TIPLINE_GATEWAY__PORT": str(gateway_port),
    }
    config = tmp_path / "tipline.yml"
    config.write_text(re.sub(r"(?m)^languages: .*$", "languages: [en, fr]",
                             (PROJECT_DIR / "config" / "tipline.yml").read_text(encoding="utf-8")),
                      encoding="utf-8")
    output = (tmp_path / "run.out").open("w")
    runner = subprocess.Popen([tipline, "run"], cwd=PROJECT_DIR, env=env, stdout=output,
                              stderr=subprocess.STDOUT)
    db = Database(make_engine(env["TIPLINE_DATABASE__URL"]))
    try:
        deadline = time.monotonic() + 300
        while "The tip line is running." not in (tmp_path / "run.out").read_text():
            assert runner.poll() is None, (tmp_path / "run.out").read_text()
            assert time.monotonic() < deadline, "tipline run did not start"
            time.sleep(0.5)
        assert (tmp_path / "run.pid").read_text().strip() == str(runner.pid)
        first = live_dialogue(db)
        assert first is not None and first["url"] == env["TIPLINE_RASA__URL"]

        reload = subprocess.run([tipline, "flows", "reload"], cwd=PROJECT_DIR,
                                env={**env, "TIPLINE_CONFIG_FILE": str(config)},
                                capture_output=True, text=True, timeout=900, check=False)
        print("\n  " + reload.stdout.strip().replace("\n", "\n  "))
        assert reload.returncode == 0, reload.stdout + reload.stderr
        live = live_dialogue(db)
        assert live is not None and live["model"] != first["model"]
        assert live["url"] != first["url"]  # the port above, unless that one was taken
        assert f"Live: model {live['model']}" in reload.stdout

        again = subprocess.run([tipline, "flows", "reload"], cwd=PROJECT_DIR,
                               env={**env, "TIPLINE_CONFIG_FILE": str(config)},
                               capture_output=True, text=True, timeout=300, check=False)
        assert again.returncode == 0 and "already live" in again.stdout, again.stdout
    finally:
        runner.terminate()
        runner.wait(timeout=60)
        output.close()
        print("  " + (tmp_path / "run.out").read_text().strip().replace("\n", "\n  ")[-1500:])
    assert not (tmp_path / "run.pid").exists()
    assert live_dialogue(db) is None  # nothing is live any more
    db.dispose()
    for url in (first["url"], live["url"]):  # both dialogue servers are gone
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=2)
