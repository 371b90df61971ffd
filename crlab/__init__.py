"""crlab: a QEMU-based, multi-architecture test harness for Linux checkpoint/restart."""

__version__ = "0.1.0"
