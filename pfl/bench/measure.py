"""Time and memory probes shared by the benchmark's arms (one process each).

Memory on a CPU is resident set size (RSS) from Linux's /proc/self/status:
`peak` is the process's high-water mark so far (VmHWM, what `ru_maxrss` reports),
`now` the current RSS (VmRSS). `Probe.start()` marks the end of the warm-up: it
records the peak so far and resets the high-water mark (writing 5 to
/proc/self/clear_refs), so that `Probe.stop()` gives the peak of the measured
rounds alone. On CUDA the same is done with torch's peak allocated memory.
Where /proc is missing, the reset is skipped and the round peak is the process peak.
On CUDA a thread also samples the GPU's utilization (`torch.cuda.utilization`, NVML: the percent of
time a kernel ran over the driver's last sample period) every 0.1 s between `start()` and `stop()`;
where NVML cannot be read (no nvidia-ml-py), `gpu_util` says why instead.
"""

from __future__ import annotations

import resource
import threading
import time

import torch


def _status(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        pass
    return None


def rss_now() -> float:
    v = _status("VmRSS")
    return v if v is not None else rss_peak()


def rss_peak() -> float:
    v = _status("VmHWM")
    return v if v is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class _Utilization(threading.Thread):
    """GPU utilization samples (percent) every `period` seconds until `stop()`."""

    def __init__(self, period: float = 0.1):
        super().__init__(daemon=True)
        self.period, self.samples, self.error, self._done = period, [], None, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self.samples.append(float(torch.cuda.utilization()))
            except Exception as exc:  # no NVML here: say so once, measure nothing
                self.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                return
            self._done.wait(self.period)

    def stop(self) -> dict:
        self._done.set()
        self.join(timeout=5)
        if not self.samples:
            return {"gpu_util": self.error or "no sample"}
        return {"gpu_util": "sampled", "gpu_util_mean": sum(self.samples) / len(self.samples),
                "gpu_util_max": max(self.samples), "gpu_util_samples": len(self.samples)}


class Probe:
    """Round times and memory of one measured process."""

    def __init__(self, device: str = "cpu"):
        self.cuda = str(device).startswith("cuda")
        self.times: list[float] = []
        self.mem: dict = {"import_mb": rss_now()}  # what the imports alone hold, before any data
        self._t = None
        self._util: _Utilization | None = None

    def start(self) -> None:
        """The warm-up is over: from here, memory is the measured rounds' own."""
        self.mem["setup_peak_mb"] = rss_peak()
        self.mem["start_mb"] = rss_now()
        _reset_peak()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.mem["cuda_start_mb"] = torch.cuda.memory_allocated() / 2**20
            self._util = _Utilization()
            self._util.start()

    def tick(self) -> None:
        """Call at the start of every measured round and once after the last."""
        if self.cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        if self._t is not None:
            self.times.append(t - self._t)
        self._t = t

    def stop(self) -> dict:
        peak = rss_peak()
        self.mem["round_peak_mb"] = peak
        self.mem["round_growth_mb"] = peak - self.mem.get("start_mb", 0.0)
        self.mem["peak_rss_mb"] = max(peak, self.mem.get("setup_peak_mb", 0.0))
        if self.cuda:
            self.mem["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        if self._util is not None:
            self.mem.update(self._util.stop())
            self._util = None
        return {"times": self.times, **self.mem}
