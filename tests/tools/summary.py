"""One summary of a `cargo test --workspace --no-fail-fast` run, per suite.

Usage: summary.py BUILD_JSON TEST_LOG [GATE_LINE ...]

BUILD_JSON is cargo's `--no-run --message-format=json` output of the build
tests/run.sh makes with clippy-driver. It gives the clippy gate (any warning
or error in the workspace's own crates fails it, as `-D warnings` would) and
names each test binary's source file, which the log does not (two packages
may both have a `tests/alerting.rs`). A binary that was built but printed no
`test result:` line (it crashed, or cargo never ran it) counts as failed.
The last line counts tests and gates: "N passed, M failed".
Exits 1 if any suite or gate failed.
"""

import json
import os
import re
import sys

RUNNING = re.compile(r"^\s+Running (?:unittests )?(\S+) \((\S+)\)$")
DOC_TESTS = re.compile(r"^\s+Doc-tests (\S+)$")
RESULT = re.compile(
    r"^test result: (ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored;.*finished in ([\d.]+)s$"
)


def read_build(path, root):
    """(executable file name -> the suite's source file relative to root,
    rendered warnings and errors of the workspace's own crates)."""
    suites, diagnostics = {}, []
    ours = f"path+file://{root}/"
    with open(path) as lines:
        for line in lines:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            reason = message.get("reason")
            # Benches are built (clippy covers every target) but `cargo test` runs none.
            if reason == "compiler-artifact" and message.get("executable") and "bench" not in message["target"]["kind"]:
                source = os.path.relpath(message["target"]["src_path"], root)
                suites[os.path.basename(message["executable"])] = source
            elif reason == "compiler-message" and message["package_id"].startswith(ours):
                if "/vendor/" in message["package_id"]:
                    continue  # upstream's code, kept as published
                diagnostic = message["message"]
                if diagnostic["level"] in ("warning", "error") and diagnostic["rendered"] not in diagnostics:
                    diagnostics.append(diagnostic["rendered"])
    return suites, diagnostics


def main():
    build_json, log_path, gates = sys.argv[1], sys.argv[2], sys.argv[3:]
    root = os.getcwd()
    expected, diagnostics = read_build(build_json, root)
    if diagnostics:
        print("\n==> clippy and rustc on the workspace's crates")
        print("".join(diagnostics))
    status = "FAILED" if diagnostics else "ok"
    gates = gates + [f"{'cargo clippy -D warnings':44} {status:6} {len(diagnostics):5} found"]
    results = {}  # suite -> (status, passed, failed, ignored, seconds)
    order = []
    suite = None
    with open(log_path, errors="replace") as log:
        for line in log:
            line = line.rstrip("\n")
            if m := RUNNING.match(line):
                suite = expected.get(os.path.basename(m.group(2)), m.group(1))
                order.append(suite)
            elif m := DOC_TESTS.match(line):
                suite = f"doc-tests {m.group(1)}"
                order.append(suite)
            elif (m := RESULT.match(line)) and suite:
                status, passed, failed, ignored, seconds = m.groups()
                results[suite] = (status.lower(), int(passed), int(failed), int(ignored), float(seconds))
                suite = None
    for source in sorted(expected.values()):
        if source not in order:
            order.append(source)

    print("\n==> Summary")
    # A gate (format, clippy, ...) counts as one check that passed or failed.
    total_passed = total_failed = broken = 0
    for gate in gates:
        print(gate)
        failed_gate = " FAILED " in gate
        total_failed += failed_gate
        total_passed += not failed_gate
    print(f"{'suite':44} {'status':6} {'passed':>7} {'failed':>7} {'ignored':>7} {'time':>8}")
    for suite in order:
        if suite in results:
            status, passed, failed, ignored, seconds = results[suite]
            print(f"{suite:44} {status:6} {passed:7} {failed:7} {ignored:7} {seconds:7.1f}s")
            total_passed += passed
            total_failed += failed
            broken += status != "ok"
        else:
            print(f"{suite:44} {'NO RESULT: crashed or not run':>40}")
            broken += 1
    print(f"{total_passed} passed, {total_failed} failed")
    return 1 if broken or total_failed else 0


if __name__ == "__main__":
    sys.exit(main())
