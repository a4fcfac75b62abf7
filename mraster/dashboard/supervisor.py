"""Runs ``aster_multi_bot.py`` as a child process for the dashboard.

The command is fixed in code (the old dashboard let its API choose it: remote code execution);
only the environment comes from the validated configuration. Stop is SIGTERM, then SIGKILL after
a grace period. A crash restarts the bot after an exponentially growing pause; too many crashes
in a window stop the retries and raise an alert instead of hammering the exchange. A bot started
by an earlier dashboard (it holds the state file's bot lock) is adopted: shown, streamed from the
event file and stoppable, and never joined by a second bot.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mraster.dashboard.hub import LogHub, parse_line
from mraster.words import Words, words

log = logging.getLogger("mraster.dashboard.supervisor")
ROOT = Path(__file__).resolve().parents[2]
BOT_COMMAND = (sys.executable, str(ROOT / "aster_multi_bot.py"))
NO_RETRY_EXIT = {2}  # refused to start (bad settings or another bot): retrying cannot help


class SupervisorError(Exception):
    """A request the supervisor cannot honour right now; the message says why."""


@dataclass
class Launch:
    """What a start needs, built fresh from the validated configuration each time."""
    env: dict[str, str]
    state_file: str
    events_file: str
    paper: bool


@dataclass
class Policy:
    grace_s: float = 10.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    loop_crashes: int = 5        # this many crashes ...
    loop_window_s: float = 300.0  # ... within this window is a crash loop


def lock_holder(state_file: str) -> int | None:
    """pid of the bot holding the state file's bot lock, None when no bot runs on it."""
    path = f"{state_file}.bot.lock"
    if not os.path.exists(path):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@dataclass
class _Status:
    state: str = "stopped"  # stopped | running | stopping | backoff | crash_loop | adopted
    pid: int | None = None
    started: float | None = None
    restarts: int = 0
    last_exit_code: int | None = None
    last_exit_reason: str = ""
    next_restart_at: float | None = None
    crashes: list[float] = field(default_factory=list)


class BotSupervisor:
    def __init__(self, hub: LogHub, launch: Callable[[], Launch],
                 files: Callable[[], tuple[str, str]], *,
                 command: tuple[str, ...] = BOT_COMMAND, policy: Policy | None = None,
                 alert: Callable[[str, str], None] = lambda level, msg: None) -> None:
        # ``command`` is a constructor argument for the supervisor's own tests only; the API
        # has no way to change it.
        self.hub = hub
        self.launch = launch
        self.files = files  # (state file, events file), readable even when settings are invalid
        self.command = command
        self.policy = policy or Policy()
        self.alert = alert
        self.st = _Status()
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None
        self._restart_task: asyncio.Task | None = None
        self._tail_task: asyncio.Task | None = None
        self._stopping = False
        self._last_err = ""
        self._paper = True
        self._lock = asyncio.Lock()

    # -- status --------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        s = self.st
        running = s.state in ("running", "adopted", "stopping")
        return {"state": s.state, "running": running, "pid": s.pid if running else None,
                "adopted": s.state == "adopted",
                "uptime_s": round(time.time() - s.started, 1) if running and s.started else 0,
                "started_ms": int(s.started * 1000) if running and s.started else None,
                "restarts": s.restarts, "last_exit_code": s.last_exit_code,
                "last_exit_reason": s.last_exit_reason,
                "next_restart_in_s": round(max(0.0, s.next_restart_at - time.time()), 1)
                if s.state == "backoff" and s.next_restart_at else None,
                "next_restart_ms": int(s.next_restart_at * 1000)
                if s.state == "backoff" and s.next_restart_at else None}

    def _publish(self, message: str, level: str = "INFO") -> None:
        self.hub.publish({"event": "supervisor", "ts": int(time.time() * 1000), "level": level,
                          "message": message})

    # -- adoption ------------------------------------------------------------------------------
    def adopt_existing(self) -> bool:
        """Called when the dashboard starts: take over a bot an earlier dashboard left running."""
        state_file, events_file = self.files()
        pid = lock_holder(state_file)
        if pid is None or self._proc is not None:
            return False
        self.st = _Status(state="adopted", pid=pid if pid > 0 else None, started=time.time())
        self._publish(f"adopted the bot already running (pid {pid}); its events are read from "
                      f"{events_file}")
        self._tail_task = asyncio.get_running_loop().create_task(self._tail(events_file, state_file))
        return True

    async def _tail(self, events_file: str, state_file: str) -> None:
        """Stream an adopted bot's event file until the bot is gone."""
        path = Path(events_file)
        pos = path.stat().st_size if path.exists() else 0
        while lock_holder(state_file) is not None:
            if path.exists():
                size = path.stat().st_size
                if size < pos:
                    pos = 0  # rotated
                if size > pos:
                    with path.open("r", encoding="utf-8", errors="replace") as f:
                        f.seek(pos)
                        chunk = f.read()
                        pos = f.tell()
                    for line in chunk.splitlines():
                        self.hub.publish(parse_line(line, "stdout"))
            await asyncio.sleep(0.5)
        if self.st.state == "adopted":
            self.st.state = "stopped"
            self.st.last_exit_reason = "the adopted bot exited"
            self._publish("the adopted bot exited")

    # -- start / stop --------------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        async with self._lock:
            if self.st.state in ("running", "adopted", "stopping"):
                raise SupervisorError(f"the bot is already running (pid {self.st.pid})")
            launch = self.launch()  # raises SettingsErrors on a bad configuration
            other = lock_holder(launch.state_file)
            if other is not None:
                raise SupervisorError(f"another bot (pid {other}) is running on "
                                      f"{launch.state_file}; stop it first")
            self._cancel_restart()
            self.st.crashes.clear()
            self.st.restarts = 0
            await self._spawn(launch)
            return self.status()

    async def _spawn(self, launch: Launch) -> None:
        self._stopping = False
        self._last_err = ""
        self._paper = launch.paper
        self._proc = await asyncio.create_subprocess_exec(
            *self.command, env=launch.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)  # a Ctrl-C in the dashboard's terminal is not the bot's
        self.st.state, self.st.pid, self.st.started = "running", self._proc.pid, time.time()
        self.st.next_restart_at = None
        self._publish(f"bot started (pid {self._proc.pid}, {'paper' if launch.paper else 'LIVE'} mode)")
        self._task = asyncio.get_running_loop().create_task(self._watch(self._proc))

    async def _read(self, stream: asyncio.StreamReader, name: str) -> None:
        while True:
            line = await stream.readline()
            if not line:
                return
            ev = parse_line(line.decode("utf-8", errors="replace"), name)
            if name == "stderr" and ev.get("message"):
                self._last_err = ev["message"]
            self.hub.publish(ev)

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout and proc.stderr
        await asyncio.gather(self._read(proc.stdout, "stdout"), self._read(proc.stderr, "stderr"))
        code = await proc.wait()
        self._proc = None
        st = self.st
        st.last_exit_code = code
        if self._stopping:
            st.state, st.last_exit_reason = "stopped", "stopped from the dashboard"
            self._publish(f"bot stopped (exit code {code})")
            return
        if code == 0:
            st.state, st.last_exit_reason = "stopped", "finished"
            self._publish("bot finished (exit code 0)")
            return
        reason = self._last_err or (f"killed by signal {signal.Signals(-code).name}" if code < 0
                                    else f"exit code {code}")
        st.last_exit_reason = reason
        if code in NO_RETRY_EXIT:
            st.state = "stopped"
            self._raise("error", words("the bot refused to start: {reason}", reason=reason))
            return
        now = time.time()
        st.crashes = [t for t in st.crashes if now - t < self.policy.loop_window_s] + [now]
        if len(st.crashes) >= self.policy.loop_crashes:
            st.state = "crash_loop"
            self._raise("error", words("the bot crashed {n} times within {seconds} s; not "
                                       "restarting it again. Last error: {reason}",
                                       n=len(st.crashes), seconds=self.policy.loop_window_s,
                                       reason=reason))
            return
        delay = min(self.policy.backoff_max_s,
                    self.policy.backoff_base_s * 2 ** (len(st.crashes) - 1))
        st.state, st.next_restart_at = "backoff", now + delay
        self._raise("warning", words("the bot crashed ({reason}); restarting in {seconds} s",
                                     reason=reason, seconds=delay))
        self._restart_task = asyncio.get_running_loop().create_task(self._restart_later(delay))

    def _raise(self, level: str, message: Words) -> None:
        self._publish(str(message), "ERROR" if level == "error" else "WARNING")
        self.alert(level, message)

    async def _restart_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock:
            if self.st.state != "backoff":
                return
            try:
                launch = self.launch()
            except ValueError as exc:
                self.st.state = "stopped"
                self._raise("error", words("the bot was not restarted: {error}", error=str(exc)))
                return
            self.st.restarts += 1
            await self._spawn(launch)

    def _cancel_restart(self) -> None:
        if self._restart_task and not self._restart_task.done():
            self._restart_task.cancel()
        self._restart_task = None

    async def stop(self) -> dict[str, Any]:
        async with self._lock:
            self._cancel_restart()
            if self.st.state in ("backoff", "crash_loop"):
                self.st.state = "stopped"
                return self.status()
            if self.st.state == "adopted":
                await self._stop_adopted()
                return self.status()
            proc = self._proc
            if proc is None:
                return self.status()
            self._stopping = True
            self.st.state = "stopping"
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.policy.grace_s)
            except asyncio.TimeoutError:
                self._publish(f"the bot did not stop within {self.policy.grace_s:g} s; killing it",
                              "WARNING")
                proc.kill()
                await self._task
            return self.status()

    async def _stop_adopted(self) -> None:
        pid = self.st.pid
        state_file = self.files()[0]
        self.st.state = "stopping"
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + self.policy.grace_s
                # the bot lock is released the moment the process ends
                while lock_holder(state_file) is not None and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                if lock_holder(state_file) is not None:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._tail_task:
            self._tail_task.cancel()
        self.st.state, self.st.last_exit_reason = "stopped", "stopped from the dashboard"
        self._publish("the adopted bot was stopped")

    async def restart(self) -> dict[str, Any]:
        await self.stop()
        return await self.start()

    async def shutdown(self) -> None:
        """The dashboard is closing: stop the bot it supervises (an adopted one keeps running)."""
        if self._tail_task:
            self._tail_task.cancel()
        if self.st.state != "adopted":
            await self.stop()
