"""Status snapshots for tray tests, shaped like what the monitor produces."""

from __future__ import annotations

from lmstudio_tray.core.models import (
    InstanceSnapshot,
    InstanceState,
    LoadedInstance,
    LoadProgress,
    ModelInfo,
    StatusReport,
)

QWEN = ModelInfo(key="qwen3-8b", type="llm", size_bytes=4_700_000_000, max_context_length=32768)
GEMMA = ModelInfo(key="gemma-3-4b", type="vlm", size_bytes=3_200_000_000, display_name="Gemma 3 4B")
NOMIC = ModelInfo(key="nomic-embed", type="embedding", size_bytes=84_000_000)
CATALOG = (QWEN, GEMMA, NOMIC)


def loaded(model: ModelInfo, *ids_ctx: tuple[str, int | None]) -> ModelInfo:
    from dataclasses import replace

    ids = ids_ctx or ((model.key, 8192),)
    return replace(model, instances=tuple(LoadedInstance(i, c) for i, c in ids))


def snap(
    state: InstanceState,
    *,
    name: str = "local",
    models: tuple[ModelInfo, ...] = CATALOG,
    loads: tuple[LoadProgress, ...] = (),
    error: str | None = None,
    can_control_server: bool = True,
    remote: bool = False,
) -> InstanceSnapshot:
    if state in (InstanceState.OFFLINE, InstanceState.AUTH_FAILED):
        models = ()
    return InstanceSnapshot(
        name=name,
        url=f"http://127.0.0.1:{1234 if name == 'local' else 4321}",
        state=state,
        models=models,
        loads=loads,
        error=error,
        can_control_server=can_control_server,
        remote=remote,
    )


def report(*snaps: InstanceSnapshot, active: str | None = None) -> StatusReport:
    return StatusReport(instances=snaps, active=active or (snaps[0].name if snaps else None))


def ready(name: str = "local") -> InstanceSnapshot:
    return snap(InstanceState.READY, name=name, models=(loaded(QWEN), GEMMA, NOMIC))


def loading(progress: float | None = 0.45, eta: float | None = 12.0) -> InstanceSnapshot:
    return snap(
        InstanceState.LOADING,
        loads=(LoadProgress(model="gemma-3-4b", started_at=0.0, progress=progress, eta_seconds=eta),),
    )
