"""Operator errors of an evaluation, found before the model loads: each one line naming the flag and the fix.

A wrong ``--out``, a device that is not there, a dataset given twice, a checkpoint folder that does not exist (or
holds a cut file), a hub id without a network, a dataset name with a typo, or a folder holding another run's
results used to surface after minutes of loading, some as a hub client's traceback. :func:`preflight` checks them
all in a second or two (the weights fingerprint, which reads every byte, is the slowest part).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["UsageError", "check_ckpt", "check_device", "check_out", "hub_reachable"]


class UsageError(ValueError):
    """An operator error: a flag's value cannot work. The message names the flag and the fix."""


def check_out(out: Path) -> None:
    """``--out`` must be a folder this process can create and write in, and no other evaluation may hold it."""
    from tooliqa_data.records import FolderLock, FolderLockedError

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder; pass a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as err:
        raise UsageError(f"--out {out}: cannot write there ({err.strerror or err}); pass a writable folder") from None
    try:
        with FolderLock(out):
            pass
    except FolderLockedError as err:
        raise UsageError(str(err)) from None


def check_device(device: str) -> None:
    """``--engine.device`` must name a device this machine has."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise UsageError(
            f"--engine.device {device}: no CUDA device is visible here (torch.cuda.is_available() is False); "
            "pass --engine.device cpu (or auto)"
        )
    index = device.partition(":")[2]
    if index and int(index) >= torch.cuda.device_count():
        raise UsageError(
            f"--engine.device {device}: this machine has {torch.cuda.device_count()} CUDA device(s); "
            f"pass cuda:0 … cuda:{torch.cuda.device_count() - 1}"
        )


def _looks_local(ckpt: str) -> bool:
    """A path, not a hub id: hub ids are ``name`` or ``owner/name`` with no leading ``.``, ``/`` or ``~``."""
    return ckpt.startswith((".", "/", "~")) or ckpt.count("/") > 1 or os.sep != "/" and os.sep in ckpt


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host (or the HTTPS proxy, when one is set) accepts a TCP connection within ``timeout``
    seconds (``HF_ENDPOINT`` honoured)."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def check_ckpt(ckpt: str, flag: str = "--ckpt") -> None:
    """``--ckpt`` must be a checkpoint folder with a config.json and sound weight files, or a hub id that is in
    the local cache or reachable now. A cached hub id without a network is loaded offline (no 162 s of retries)."""
    from tooliqa_trainer.weights import check_checkpoint

    path = Path(ckpt).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(
                f"{flag} {ckpt}: the folder has no config.json, so it is no exported model; pass the folder "
                "ExportHF wrote (the demo's: runs/demo/hf)"
            )
        check_checkpoint(path)
        return
    if path.exists() or _looks_local(ckpt):
        what = "is not a folder" if path.exists() else "no such folder"
        raise UsageError(
            f"{flag} {ckpt}: {what}; pass an exported checkpoint folder (the demo writes runs/demo/hf) or a hub id "
            "such as Qwen/Qwen3-VL-8B-Instruct"
        )
    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(ckpt, "config.json"), str)
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        if not cached:
            raise UsageError(
                f"{flag} {ckpt}: no such folder, and as a hub id it is not in the local cache while HF_HUB_OFFLINE is "
                "set; pass an exported checkpoint folder (the demo writes runs/demo/hf), or download the id first"
            )
        return
    if not hub_reachable():
        if not cached:
            raise UsageError(
                f"{flag} {ckpt}: no such folder, and as a hub id it is not in the local cache while the hub cannot be "
                "reached (no network); pass a local checkpoint folder, or download the id where there is a network"
            )
        # cached: load it from the cache at once instead of retrying the hub (the client read the variable already)
        import huggingface_hub.constants

        os.environ["HF_HUB_OFFLINE"] = "1"
        huggingface_hub.constants.HF_HUB_OFFLINE = True
