"""Size and start-up time of the one-file Linux bundle, against the pip-installed app as the baseline.

    .venv/bin/python bench/bundle_bench.py [--runs 5] [--force-build]

Builds the bundle with installers/bundle.py (reused from .cache/bundle when nothing changed), then times
`--version` (start-up alone) and `status --json` against an emulator (start-up + one poll), alternating
bundle and baseline runs so a busy machine slows both alike. Prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmstudio_tray.emulator import Emulator, EmulatorSettings  # noqa: E402


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bundle_builder", ROOT / "installers" / "bundle.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+system) of one run; CPU time depends less on a busy machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{argv} failed ({r.returncode}): {r.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def unpacked_mb(exe: Path) -> float:
    from PyInstaller.archive.readers import CArchiveReader  # type: ignore[import-untyped,unused-ignore]

    toc = CArchiveReader(str(exe)).toc
    return float(sum(entry[2] for entry in toc.values())) / 1e6  # (offset, compressed, uncompressed, ...)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--force-build", action="store_true")
    parser.add_argument("--no-build", action="store_true", help="measure the bundle in .cache/bundle as it is")
    args = parser.parse_args()

    builder = load_builder()
    t0 = time.perf_counter()
    exe = builder.DEFAULT_DIST / "lmstudio-tray" if args.no_build else builder.build(force=args.force_build)
    build_s = time.perf_counter() - t0
    baseline = Path(sys.executable).with_name("lmstudio-tray")
    if not baseline.is_file():
        raise SystemExit(f"baseline {baseline} missing: pip install -e . into this venv")

    emulator = Emulator(EmulatorSettings()).start()
    results: dict[str, dict[str, list[tuple[float, float]]]] = {"bundle": {}, "pip": {}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp, "config.toml")
            cfg.write_text(f'[[instances]]\nname = "bench"\nurl = "{emulator.api_url}"\n')
            env = dict(os.environ, XDG_STATE_HOME=f"{tmp}/state", XDG_CONFIG_HOME=f"{tmp}/config",
                       XDG_CACHE_HOME=f"{tmp}/cache")
            cases = {"--version": ["--version"], "status --json": ["--config", str(cfg), "status", "--json"]}
            for name, program in (("bundle", str(exe)), ("pip", str(baseline))):
                timed([program, "--version"], env)  # warm the page cache once; the first-ever run is an outlier
                results[name] = {case: [] for case in cases}
            for _ in range(args.runs):
                for case, extra in cases.items():
                    for name, program in (("bundle", str(exe)), ("pip", str(baseline))):
                        results[name][case].append(timed([program, *extra], env))
    finally:
        emulator.close()

    size = exe.stat().st_size
    print(f"bundle: {exe}")
    print(f"  size {size / 1e6:.1f} MB ({size:,} bytes); build {'reused' if build_s < 5 else f'{build_s:.0f} s'}")
    print(f"  unpacks to {unpacked_mb(exe):.0f} MB in a temporary dir at every start (one-file mode)")
    print(f"  load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.runs} runs each, medians:")
    for case in ("--version", "status --json"):
        b, bc = (statistics.median(x) for x in zip(*results["bundle"][case], strict=True))
        p, pc = (statistics.median(x) for x in zip(*results["pip"][case], strict=True))
        print(f"  {case:<14} bundle {b:5.2f} s (cpu {bc:4.2f} s)   pip-installed baseline {p:5.2f} s "
              f"(cpu {pc:4.2f} s)   ratio {b / p:3.1f}x wall, {bc / pc:3.1f}x cpu")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
