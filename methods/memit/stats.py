"""MEMIT's key statistics: the uncentred covariance `C = E[k kᵀ]` of each edited module's input.

`C` is the `C_0 / n` of the paper's Eq. 14 (the reference's "mom2"), estimated from a text corpus.
One forward pass serves every edited layer: pre-hooks on all edited modules read their inputs, and
the forward stops as soon as the last of them has been read (the blocks above are never run).
The sums are float64 and symmetric: only their upper block triangle is computed and kept (`SymmetricSum`).
Results are cached per (the weights below the last edited module (`weights_read_before`), module,
corpus, sample count) as safetensors with a JSON sidecar
beside each (provenance and sha256, `editbench.files.write_artifact`); a file whose bytes do not
match its checksum, or that holds NaN/Inf, is removed with a warning and recomputed.
"""
from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor, nn
from tqdm.auto import tqdm

from editbench.errors import CorruptArtifact
from editbench.files import read_artifact, read_provenance, remove_artifact, warn, write_artifact
from editbench.guard import is_finite
from editbench.provenance import config_key
from editbench.methods.memit.locate import StopForward
from editbench.modules import get_module


PANEL_WIDTH = 192  # rows per panel of a symmetric sum (SmolLM2's 1536 inputs: 8 panels, 56% of the full GEMM's work)
MAX_PANELS = 16  # wide inputs (GPT-J: 16,384) get wider panels rather than many small GEMMs


def token_batches(tokenizer: Any, texts: Sequence[str], max_length: int, batch_tokens: int) -> list[tuple[Tensor, Tensor]]:
    """(input_ids [b, t], attention_mask [b, t]) batches of at most `batch_tokens` padded tokens.

    Texts are sorted by length (longest first) so that little padding is computed.
    """
    rows = [tokenizer(text, truncation=True, max_length=max_length)["input_ids"] for text in texts]
    rows = sorted((r for r in rows if r), key=len, reverse=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches, start = [], 0
    while start < len(rows):
        width = len(rows[start])
        size = max(1, batch_tokens // width)
        chunk = rows[start:start + size]
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, r in enumerate(chunk):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        batches.append((ids, mask))
        start += size
    return batches


class SymmetricSum:
    """`Σ k kᵀ` ([d, d], symmetric) of one module's inputs, accumulated in float64 as its upper
    block triangle: row panel i holds rows [a_i, a_{i+1}) and columns [a_i, d) of the sum.

    Each batch costs one GEMM per panel, about (p + 1) / 2p of the full `kᵀ k` (p panels), and the
    float64 panels hold the same share of a dense float64 sum's memory. The blocks below the
    diagonal are the transposes of those above (`dense`).
    """

    def __init__(self, dim: int, device: torch.device | str = "cpu"):
        panels = min(MAX_PANELS, max(1, dim // PANEL_WIDTH))
        self.dim = dim
        self.bounds = [dim * i // panels for i in range(panels + 1)]
        shapes = [(b - a, dim - a) for a, b in zip(self.bounds, self.bounds[1:])]
        # One allocation for all panels: freed at once, it goes back to the system whole.
        flat = torch.zeros(sum(r * c for r, c in shapes), dtype=torch.float64, device=device)
        self.panels = [part.view(shape) for part, shape in zip(flat.split([r * c for r, c in shapes]), shapes)]

    def add(self, keys: Tensor) -> None:
        """Add `keysᵀ keys` (keys [n, d]); each panel's product is taken in `keys.dtype`."""
        for (a, b), panel in zip(zip(self.bounds, self.bounds[1:]), self.panels):
            panel += keys[:, a:b].T @ keys[:, a:]

    def dense(self, divisor: float = 1.0, dtype: torch.dtype = torch.float64) -> Tensor:
        """The full symmetric `Σ k kᵀ / divisor` [d, d] in `dtype` (divided in float64, then rounded)."""
        out = torch.empty(self.dim, self.dim, dtype=dtype, device=self.panels[0].device)
        for (a, b), panel in zip(zip(self.bounds, self.bounds[1:]), self.panels):
            block = panel / divisor
            out[a:b, a:] = block
            out[b:, a:b] = block[:, b - a:].T
        return out


@torch.no_grad()
def second_moments(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], module_names: Sequence[str],
                   dtype: torch.dtype = torch.float32, progress: bool = True) -> tuple[dict[str, SymmetricSum], int]:
    """Sums `Σ k kᵀ` ([d_in, d_in], float64, see `SymmetricSum`) of each module's input over all real
    tokens, and the token count.

    Each batch's products are taken in `dtype` and added to the float64 sums. The forward keeps no
    key/value cache and stops once the last module's input has been read.
    """
    device = next(model.parameters()).device
    batches = list(batches)
    sums: dict[str, SymmetricSum] = {}
    seen: set[str] = set()
    current: dict[str, Tensor] = {}

    def reader(name: str):
        def read(module: nn.Module, args: tuple) -> None:
            inputs = args[0].reshape(-1, args[0].shape[-1])  # [b * t, d_in]
            keys = inputs if current["rows"] is None else inputs.index_select(0, current["rows"])  # [n, d_in]: real tokens
            if name not in sums:
                sums[name] = SymmetricSum(keys.shape[1], keys.device)
            sums[name].add(keys.to(dtype))
            seen.add(name)
            if len(seen) == len(module_names):
                raise StopForward
        return read

    options = _no_cache(model)
    handles = [get_module(model, n).register_forward_pre_hook(reader(n)) for n in module_names]
    count = 0
    try:
        total = sum(int(mask.sum()) for _, mask in batches)
        with tqdm(total=total, unit="tok", desc="memit statistics", disable=None if progress else True) as bar:
            for ids, mask in batches:
                tokens = int(mask.sum())
                real = mask.to(device).reshape(-1).bool()
                current["rows"] = None if tokens == mask.numel() else real.nonzero().squeeze(1)
                seen.clear()
                try:
                    model(input_ids=ids.to(device), attention_mask=mask.to(device), **options)
                except StopForward:
                    pass
                count += tokens
                bar.update(tokens)
    finally:
        for h in handles:
            h.remove()
    return sums, count


@torch.no_grad()
def weights_read_before(model: nn.Module, tokenizer: Any, module_names: Sequence[str]) -> list[str]:
    """State-dict entries of the modules that run before every module of `module_names` has read its
    input: the only weights the statistics depend on (with the tokenizer and the corpus).

    Traced on a forward of one short text that stops like `second_moments`; the blocks above and
    the head never run, so their tensors are never read (`model_fingerprint(names=...)`).
    """
    device = next(model.parameters()).device
    wanted, ran = set(module_names), set()

    def entered(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            ran.add(name)
            if name in wanted and wanted <= ran:
                raise StopForward
        return hook

    handles = [module.register_forward_pre_hook(entered(name)) for name, module in model.named_modules()]
    ids = tokenizer("The statistics", return_tensors="pt")["input_ids"].to(device)  # [1, t]
    try:
        model(input_ids=ids, attention_mask=torch.ones_like(ids), **_no_cache(model))
    except StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    return [key for key in model.state_dict(keep_vars=True) if key.rpartition(".")[0] in ran]


def _no_cache(model: nn.Module) -> dict[str, bool]:
    """`use_cache=False` where the forward takes it: a decoder would otherwise keep every layer's keys and values."""
    return {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}


class CovarianceCache:
    """Covariances of one (model, corpus, sample count, token limit, dtype), one file per module.

    folder/<module>.safetensors holds `covariance` [d_in, d_in]; folder/<module>.json its provenance.
    """

    def __init__(self, root: Path, fingerprint: str, corpus: str, samples: int, max_length: int, dtype: str):
        self.identity = {"model": fingerprint, "corpus": corpus, "samples": samples, "max_length": max_length, "dtype": dtype}
        self.folder = Path(root) / "memit-stats" / config_key(self.identity)

    def path(self, module: str) -> Path:
        return self.folder / f"{module}.safetensors"

    def missing(self, modules: Sequence[str]) -> list[str]:
        """Modules without a stored covariance (a file whose sidecar cannot be read counts as missing)."""
        return [m for m in modules if not self._readable(m)]

    def _readable(self, module: str) -> bool:
        if not self.path(module).is_file():
            return False
        try:
            read_provenance(self.path(module))
            return True
        except CorruptArtifact:
            return False

    def load(self, module: str) -> Tensor | None:
        """`module`'s verified covariance, or None (after a warning) when the file is corrupt: it is
        removed, and the caller recomputes it."""
        path = self.path(module)
        try:
            payload, _ = read_artifact(path)
            try:
                covariance = load(payload)["covariance"]
            except (SafetensorError, KeyError) as exc:
                raise CorruptArtifact(path, f"not a covariance file: {type(exc).__name__}") from None
            if not is_finite(covariance):
                raise CorruptArtifact(path, "non-finite values")
        except CorruptArtifact as exc:
            remove_artifact(path)
            warn(f"cached statistics {exc.path} are corrupt ({exc.reason}): removed, recomputing")
            return None
        return covariance

    def provenance(self, module: str) -> dict[str, Any]:
        """The record stored beside `module`'s covariance (corpus, tokens, seconds, created)."""
        return read_provenance(self.path(module))

    def build_seconds(self, modules: Sequence[str]) -> float | None:
        """Seconds the passes that computed `modules` took (one pass fills several modules)."""
        passes = {}
        for module in modules:
            record = self.provenance(module)
            if record.get("seconds") is None:
                return None
            passes[(record.get("created"), record["seconds"])] = float(record["seconds"])
        return sum(passes.values())

    def store(self, module: str, covariance: Tensor, provenance: dict[str, Any]) -> None:
        write_artifact(self.path(module), save({"covariance": covariance.contiguous()}),
                       {**self.identity, **provenance, "module": module})


def compute_covariances(model: nn.Module, tokenizer: Any, module_names: Sequence[str], texts: Sequence[str],
                        max_length: int, batch_tokens: int, dtype: torch.dtype) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """`C = Σ k kᵀ / n` ([d_in, d_in] in `dtype`) for each module, from one pass over `texts`."""
    start = time.perf_counter()
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    max_length = min(max_length, limit) if limit else max_length  # never past the model's positions
    batches = token_batches(tokenizer, texts, max_length, batch_tokens)
    sums, count = second_moments(model, batches, module_names, dtype)
    covariances = {}
    for name in module_names:  # each float64 sum is freed as soon as its covariance is built
        covariances[name] = sums.pop(name).dense(count, dtype)
    info = {"tokens": count, "texts": len(texts), "seconds": round(time.perf_counter() - start, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return covariances, info
