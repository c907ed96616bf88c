"""Tests that need a stock kernel: run inside the kernel lab (tests/lab/test_kernel_lab.py)."""
