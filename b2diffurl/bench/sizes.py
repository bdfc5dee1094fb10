"""Byte counts as the reports print them."""


def gib(n):
    return f"{n / 2**30:.2f} GiB"


def mib(n):
    return f"{n / 2**20:.1f} MiB"
