"""LM Studio version profiles: which routes, auth and error formats a given app version has."""

from __future__ import annotations

import re
from dataclasses import dataclass

VersionTuple = tuple[int, int, int]


def parse_version(text: str) -> VersionTuple:
    """Parse "0.4.8", "0.4.4+1" or "0.3.x" (a wildcard counts as 0) into a comparable tuple."""
    core = text.strip().split("+", 1)[0].split("-", 1)[0]
    parts = core.split(".")
    if not 1 <= len(parts) <= 3 or not all(re.fullmatch(r"\d+|x|\*", p) for p in parts):
        raise ValueError(f"not an LM Studio version: {text!r}")
    numbers = [int(p) if p.isdigit() else 0 for p in parts]
    while len(numbers) < 3:
        numbers.append(0)
    return numbers[0], numbers[1], numbers[2]


@dataclass(frozen=True)
class VersionProfile:
    """Feature switches derived from the version milestones in LM Studio's API changelog."""

    version: str

    @property
    def number(self) -> VersionTuple:
        return parse_version(self.version)

    @property
    def has_rest_v0(self) -> bool:
        return self.number >= (0, 3, 6)

    @property
    def has_rest_v1(self) -> bool:
        return self.number >= (0, 4, 0)

    @property
    def has_auth(self) -> bool:
        return self.number >= (0, 4, 0)

    @property
    def has_jit(self) -> bool:
        return self.number >= (0, 3, 5)

    @property
    def has_v0_capabilities(self) -> bool:
        return self.number >= (0, 3, 16)

    @property
    def legacy_model_errors(self) -> bool:
        # 0.3.5 to 0.3.1x answered unknown models with 404 "Model ... not found"; later builds use 400.
        return self.number < (0, 3, 20)

    @property
    def string_error_bodies(self) -> bool:
        # "No models loaded" was a bare string before 0.4; 0.4.x wraps it in the OpenAI error envelope.
        return self.number < (0, 4, 0)
