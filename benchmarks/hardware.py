"What machine a benchmark ran on: shared by the scripts in benchmarks/ (run as `python benchmarks/NAME.py`)."
import platform, subprocess


def cpu_model() -> str:
    "CPU model name from lscpu (or platform)."
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith('Model name:'): return line.split(':', 1)[1].strip()
    except Exception: pass
    return platform.processor() or 'unknown'
