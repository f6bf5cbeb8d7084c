"""ログ and インシデント page times with a million rows, beside a nearly empty database's, and pruning.

Two throw-away instances served by `xmonbridge serve` (gunicorn, 2 workers, dispatcher off):
a baseline holding one page of rows (a detail page needs a row to show) and one filled with
ROWS rows per table. Both are filled straight into their SQLite file with INSERT … SELECT over
a recursive CTE: request_logs; alerts, each with a notification, a delivery and an attempt (a
fifth of them button calls with the alert read out in the call, an acknowledgement per hundred
button calls, one RECOVERY in four tied to its PROBLEM); a tenth as many simulated messages;
spread evenly over SPAN days up to now. Each page is fetched REPEAT times by a logged-in
administrator after one warm-up, and the median is printed for both databases: the first page,
filtered pages, a deep page and a detail page.

Then retention is set to half the span and `retention.prune()` runs in this process in passes
as the idle dispatcher runs it (a few batches, at most PASS_SECONDS), back to back, until
nothing old is left or --prune-for seconds have passed: the time, the passes and batches, the
longest batch, and the commit times of a writer that inserts a ログ row every 10 ms meanwhile
(on its own connection, as a webhook would).

Target (issue 9): every page under 0.25 s with a million rows.

    .venv/bin/python bench/retention_pages.py [--rows 1000000] [--span 800] [--repeat 5]
        [--prune-for 600] [--no-prune] [--keep]
"""

from __future__ import annotations

import argparse
import http.cookiejar
import re
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from _common import RealServer, percentile
from tests.factories import PASSWORD, make_twilio_account, make_user

TARGET = 0.25
# The baseline database: one page of each table.
BASELINE_ROWS = 50
ACCOUNTS = ("運用チームアカウント", "予備アカウント", "検証用アカウント")
# (setting_type, setting_id, name, channel): the rare one gets one alert in a thousand.
SETTINGS = (
    ("simple_call", 1, "電話連絡", "call"),
    ("simple_call", 2, "夜間の電話連絡", "call"),
    ("sms", 1, "SMS連絡", "sms"),
    ("sms", 2, "担当者へのSMS", "sms"),
    ("button_call", 1, "ボタン操作付きの連絡", "button"),
)
RARE = ("sms", 3, "まれな設定", "sms")
LOG_KINDS = ("call", "call", "call", "sms", "sms", "status_callback", "status_callback", "status_callback", "voice", "gather")


def _case(expression: str, values: tuple[str, ...] | list[str]) -> str:
    """A SQL CASE choosing values[expression % len(values)]."""
    branches = " ".join(f"WHEN {n} THEN '{v}'" for n, v in enumerate(values))
    return f"(CASE ({expression}) % {len(values)} {branches} END)"


def fill(path: Path, rows: int, span_days: int) -> float:
    """Fill the instance's database; return the seconds it took."""
    started = time.perf_counter()
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    step = span_days * 86400 / rows
    start = time.time() - span_days * 86400
    seq = f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {rows})"
    at = f"(datetime({start} + i * {step}, 'unixepoch') || '.000000')"
    # Settings: every thousandth alert is for the rare one, the rest in turn.
    setting = lambda k: f"(CASE WHEN i % 1000 = 0 THEN '{RARE[k]}' ELSE {_case('i', [s[k] for s in SETTINGS])} END)"  # noqa: E731
    setting_id = f"(CASE WHEN i % 1000 = 0 THEN {RARE[1]} ELSE (CASE i % {len(SETTINGS)} " + " ".join(
        f"WHEN {n} THEN {s[1]}" for n, s in enumerate(SETTINGS)
    ) + " END) END)"
    with con:
        con.execute(
            f"INSERT INTO request_logs (id, created_at, kind, account_name, setting_type, setting_id, setting_name, "
            f"destination, from_number, http_status, sid, error_code, error_message, duration_ms, success, simulated, "
            f"request_summary) {seq} SELECT i, {at}, {_case('i', LOG_KINDS)}, {_case('i / 7', ACCOUNTS)}, "
            f"{setting(0)}, {setting_id}, {setting(2)}, '+8190' || printf('%08d', i % 50), '+815012340001', "
            f"CASE WHEN i % 97 = 0 THEN 400 ELSE 201 END, 'CA' || printf('%032x', i), "
            f"CASE WHEN i % 97 = 0 THEN 21211 END, CASE WHEN i % 97 = 0 THEN 'Invalid To' ELSE '' END, "
            f"120 + i % 300, i % 97 != 0, 0, '{{\"To\": \"+819000000000\", \"Timeout\": 60}}' FROM seq"
        )
        con.execute(
            f"INSERT INTO alerts (id, received_at, setting_type, setting_id, setting_name, notification_type, host, "
            f"host_address, service, state, output, problem_id, last_problem_id, correlation_id, event_time, "
            f"problem_alert_id, token_name, repeats) {seq} SELECT i, {at}, {setting(0)}, {setting_id}, {setting(2)}, "
            f"CASE WHEN i % 4 = 0 THEN 'RECOVERY' ELSE 'PROBLEM' END, 'web-server' || printf('%03d', i % 300), "
            f"'192.0.2.' || (i % 250), 'HTTP', CASE WHEN i % 4 = 0 THEN 'OK' ELSE 'CRITICAL' END, "
            f"'HTTP CRITICAL - Connection refused', CAST(i AS TEXT), '', CAST(i AS TEXT), {at}, "
            f"CASE WHEN i % 4 = 0 THEN i - 1 END, 'monitor', 0 FROM seq"
        )
        con.execute(
            f"INSERT INTO notifications (id, alert_id, channel, setting_type, setting_id, setting_name, account_id, "
            f"account_name, from_number, text, url, ring_seconds, status, created_at, finished_at, mode) "
            f"{seq} SELECT i, i, {setting(3)}, {setting(0)}, {setting_id}, {setting(2)}, NULL, '{ACCOUNTS[0]}', "
            f"'+815012340001', 'ホスト web-server のサービス HTTP で障害が発生しました。', '', 60, 'done', {at}, {at}, "
            f"CASE WHEN {setting(3)} = 'button' THEN 'all' ELSE '' END FROM seq"
        )
        con.execute(
            f"INSERT INTO deliveries (id, notification_id, user_name, to_number, position, status, next_at, tries, "
            f"sid, final_status, error, updated_at) {seq} SELECT i, i, '佐藤 翔太', '+8190' || printf('%08d', i % 50), "
            f"0, 'sent', {at}, 1, 'CA' || printf('%032x', i), 'completed', '', {at} FROM seq"
        )
        con.execute(
            f"INSERT INTO attempts (id, delivery_id, number, started_at, finished_at, outcome, sid, error_message, "
            f"callback_token, final_status, final_at, answered_by, placed_by) {seq} SELECT i, i, 1, {at}, {at}, "
            f"'placed', 'CA' || printf('%032x', i), '', 'token-' || i, 'completed', {at}, '', 'bench' FROM seq"
        )
        con.execute(
            "INSERT INTO call_announcements (attempt_id, alert_id) "
            "SELECT a.id, n.alert_id FROM attempts a JOIN deliveries d ON d.id = a.delivery_id "
            "JOIN notifications n ON n.id = d.notification_id WHERE n.channel = 'button'"
        )
        con.execute(
            "INSERT INTO acknowledgements (notification_id, attempt_id, alert_id, host, service, author, comment, sink, "
            "status, tries, next_at, error, created_at, done_at) "
            "SELECT n.id, n.id, n.alert_id, 'web-server', 'HTTP', '佐藤 翔太', '電話で認知', 'http', 'done', 1, "
            "n.created_at, '', n.created_at, n.created_at FROM notifications n "
            "WHERE n.channel = 'button' AND n.id % 100 = 4"
        )
        sims = max(1, rows // 10)
        sim_step = span_days * 86400 / sims
        con.execute(
            f"INSERT INTO simulated_messages (id, created_at, channel, sid, account_sid, from_number, to_number, url, "
            f"body, timeout, status) WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {sims}) "
            f"SELECT i, (datetime({start} + i * {sim_step}, 'unixepoch') || '.000000'), 'sms', "
            f"'SM' || printf('%032x', i), 'AC' || printf('%032x', 1), '+815012340001', '+819001230001', '', "
            f"'【障害】web-server HTTP CRITICAL', NULL, 'delivered' FROM seq"
        )
    con.close()
    return time.perf_counter() - started


class Browser:
    """An administrator's session on a server: login once, then time GETs."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), urllib.request.ProxyHandler({})
        )
        page = self.get("/login")
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
        data = {"login": "admin", "password": PASSWORD, "csrf_token": token.group(1) if token else ""}
        with self.opener.open(f"{base}/login", urllib.parse.urlencode(data).encode(), timeout=30) as answer:
            answer.read()
        if "ログアウト" not in self.get("/incidents/"):
            raise SystemExit("could not log in")

    def get(self, path: str) -> str:
        with self.opener.open(f"{self.base}{path}", timeout=120) as answer:
            return answer.read().decode()

    def time(self, path: str, repeat: int) -> float:
        """The median seconds of repeat GETs of path (after one untimed warm-up)."""
        self.get(path)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            self.get(path)
            times.append(time.perf_counter() - started)
        return statistics.median(times)


def pages(rows: int) -> list[tuple[str, str, str]]:
    """(screen, what, path) of every page timed; {detail} is an id in the middle of each database."""
    month_ago = time.strftime("%Y-%m-%d", time.localtime(time.time() - 30 * 86400))
    year_ago = time.strftime("%Y-%m-%d", time.localtime(time.time() - 365 * 86400))
    year_ago_end = time.strftime("%Y-%m-%d", time.localtime(time.time() - 358 * 86400))
    deep = rows // 50 // 2
    return [
        ("ログ", "first page", "/admin/twilio/logs/"),
        ("ログ", "種別 = 発信", "/admin/twilio/logs/?kind=call"),
        ("ログ", "Twilio アカウント", f"/admin/twilio/logs/?account={urllib.parse.quote(ACCOUNTS[1])}"),
        ("ログ", "結果 = 失敗", "/admin/twilio/logs/?result=failure"),
        ("ログ", "期間: the last 30 days", f"/admin/twilio/logs/?start={month_ago}"),
        ("ログ", "期間: one week a year ago", f"/admin/twilio/logs/?start={year_ago}&end={year_ago_end}"),
        ("ログ", "設定 (part of a name)", f"/admin/twilio/logs/?setting={urllib.parse.quote('夜間')}"),
        ("ログ", f"page {deep}", f"/admin/twilio/logs/?page={deep}"),
        ("ログ", "detail", "/admin/twilio/logs/{detail}"),
        ("ログ", "シミュレーション発信履歴", "/admin/twilio/logs/simulated"),
        ("インシデント", "first page", "/incidents/"),
        ("インシデント", "設定 (one alert in 5)", "/incidents/?setting=simple_call:1"),
        ("インシデント", "設定 (one in 1,000)", "/incidents/?setting=sms:3"),
        ("インシデント", "期間: one week a year ago", f"/incidents/?start={year_ago}&end={year_ago_end}"),
        ("インシデント", "設定 and 期間", f"/incidents/?setting=sms:1&start={month_ago}"),
        ("インシデント", "ホスト (part of a name)", "/incidents/?host=server042"),
        ("インシデント", f"page {deep}", f"/incidents/?page={deep}"),
        ("インシデント", "detail", "/incidents/{detail}"),
    ]


class Writer(threading.Thread):
    """Inserts a ログ row every EVERY seconds on its own connection, timing each commit."""

    EVERY = 0.01

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.waits: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        con = sqlite3.connect(self.path, isolation_level=None)
        con.execute("PRAGMA busy_timeout=5000")
        while not self.stopping.wait(self.EVERY):
            started = time.perf_counter()
            con.execute(
                "INSERT INTO request_logs (created_at, kind, account_name, setting_type, setting_name, destination, "
                "from_number, sid, error_message, duration_ms, success, simulated, request_summary) VALUES "
                "(strftime('%Y-%m-%d %H:%M:%f000', 'now'), 'status_callback', '', '', '', '', '', '', '', 0, 1, 0, '{}')"
            )
            self.waits.append(time.perf_counter() - started)
        con.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def _sleep(seconds: float) -> bool:
    """The pause between batches, as the dispatcher's (never woken here)."""
    time.sleep(seconds)
    return False


def retention_pass() -> str:
    from xmonbridge import retention

    return f"{retention.PASS_BATCHES} batches / {retention.PASS_SECONDS * 1000:.0f} ms, {retention.BATCH_PAUSE * 1000:.0f} ms apart"


def serve(root: Path) -> RealServer:
    server = RealServer(root, mode="simulate", DISPATCHER_ENABLED="false")
    with server.app_context():
        make_user(login="admin", is_admin=True, is_approver=True)
        # The ログ filter offers the accounts' names.
        for name in ACCOUNTS:
            make_twilio_account(name=name)
    return server


def prune(server: RealServer, keep_days: int, seconds: float) -> tuple[float, bool, int, int, float, dict[str, int]]:
    """Prune in passes as the idle dispatcher does, back to back, until nothing old is left.

    Returns (seconds, finished, passes, batches, longest batch, rows deleted per kind); gives up
    after `seconds`.
    """
    from xmonbridge import retention
    from xmonbridge.extensions import db
    from xmonbridge.models import XmonSettings, utcnow

    with server.app_context():
        XmonSettings.for_update().retention_days = keep_days
        db.session.commit()
        started = time.perf_counter()
        passes = batches = 0
        longest = 0.0
        deleted: dict[str, int] = {}
        limits: dict[str, int] = {}
        more = True
        while more and time.perf_counter() - started < seconds:
            report = retention.prune(utcnow(), max_seconds=retention.PASS_SECONDS, limits=limits, pause=_sleep)
            passes += 1
            batches += report.batches
            longest = max(longest, report.longest)
            for kind, count in report.deleted.items():
                deleted[kind] = deleted.get(kind, 0) + count
            more = report.more
        return time.perf_counter() - started, not more, passes, batches, longest, deleted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--span", type=int, default=800, help="days the rows are spread over")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the instance folders")
    parser.add_argument("--no-prune", action="store_true", help="time the pages only")
    parser.add_argument("--prune-for", type=float, default=600, help="give pruning up to this many seconds")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="xmonbridge-bench-retention-"))
    empty, full = serve(root / "empty"), serve(root / "full")
    # The baseline holds one page of each (a detail page needs a row to show).
    fill(empty.instance / "xmonbridge.sqlite", BASELINE_ROWS, args.span)
    print(f"filling {args.rows:,} rows per table over {args.span} days …", flush=True)
    seconds = fill(full.instance / "xmonbridge.sqlite", args.rows, args.span)
    size = (full.instance / "xmonbridge.sqlite").stat().st_size / 2**20
    print(f"filled in {seconds:.0f} s ({size:,.0f} MiB)", flush=True)
    print()
    results = []
    for server in (empty, full):
        server.start(workers=2)
    try:
        browsers = (Browser(empty.base), Browser(full.base))
        print(f"{'screen':<8} {'page':<28} {BASELINE_ROWS:>6} rows {args.rows:>9,} rows  ratio")
        for screen, what, path in pages(args.rows):
            times = [
                browser.time(path.format(detail=count // 2), args.repeat)
                for browser, count in zip(browsers, (BASELINE_ROWS, args.rows))
            ]
            results.append(times[1])
            flag = "" if times[1] < TARGET else "  over target"
            print(f"{screen:<8} {what:<28} {times[0] * 1000:8.0f} ms {times[1] * 1000:11.0f} ms  {times[1] / times[0]:4.1f}×{flag}")
        print(f"\nslowest page with {args.rows:,} rows: {max(results) * 1000:.0f} ms (target {TARGET * 1000:.0f} ms)")
    finally:
        for server in (empty, full):
            server.stop()
    if not args.no_prune:
        report_pruning(full, args.span // 2, args.prune_for)
    if args.keep:
        print(f"instances kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


def report_pruning(full: RealServer, keep: int, prune_for: float) -> None:
    from xmonbridge import retention

    writer = Writer(full.instance / "xmonbridge.sqlite")
    writer.start()
    try:
        seconds, finished, passes, batches, longest, deleted = prune(full, keep, prune_for)
    finally:
        writer.stop()
    print(
        f"\npruning rows older than {keep} days: {'done in' if finished else 'stopped after'} {seconds:.1f} s, "
        f"{passes} passes of at most "
        f"{retention_pass()}, {batches} batches, longest batch {longest * 1000:.0f} ms; deleted "
        + ", ".join(f"{kind} {count:,}" for kind, count in deleted.items())
        + " (each alert with its notification, delivery, attempt and what hangs on them)"
    )
    print(
        f"at the idle dispatcher's pace (a pass every {retention.BACKLOG_EVERY.total_seconds():.0f} s while a "
        f"backlog is left) that is {passes * retention.BACKLOG_EVERY.total_seconds() / 3600:.1f} h"
    )
    print(
        f"a writer inserting a ログ row every {Writer.EVERY * 1000:.0f} ms meanwhile: {len(writer.waits):,} inserts, "
        f"p50 {percentile(writer.waits, 50) * 1000:.1f} ms, p99 {percentile(writer.waits, 99) * 1000:.1f} ms, "
        f"max {max(writer.waits, default=0) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
