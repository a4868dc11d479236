"""Quality of a set of samples: registered metrics on the inputs they declare, the
in-project feature extractor, and speed (parameters, FLOPs, ms per model call)."""
from __future__ import annotations

from typing import Any


def call_metric(metric: Any, given: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a registered metric on the inputs it declares; a crash becomes an ``error``
    result, not a lost evaluation."""
    args = [given[i] for i in metric.inputs if i != "extractor"]
    kwargs = {"extractor": given["extractor"]} if "extractor" in metric.inputs else {}
    try:
        out = metric.factory(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - one broken metric must not hide the others
        return [{"metric": metric.name, "value": None, "status": "error",
                 "reason": f"{type(e).__name__}: {e}"}]
    return out if isinstance(out, list) else [out]


def quality_metrics(samples: Any, reference: Any, extractor: Any = None
                    ) -> list[dict[str, Any]]:
    """Every registered metric with ``evaluate=True``, in registry order, on the inputs it
    declares (see :class:`evaluator.measure.registry.Metric`).

    Args:
        samples: (N, C, H, W) in [-1, 1].
        reference: held-out data (``ImageData`` or tensor) the samples are compared with.
        extractor: the in-project feature extractor (trained on the training split), or
            the exception that prevented it.
    """
    from evaluator.measure.registry import METRICS

    given = {"samples": samples, "reference": getattr(reference, "images", reference),
             "reference_data": reference, "extractor": extractor}
    results = []
    for _, metric in METRICS.items():
        if not metric.evaluate:
            continue
        if "extractor" in metric.inputs and isinstance(extractor, Exception):
            # never fall back to an extractor fit on the test set
            results.append({"metric": metric.name, "value": None, "status": "error",
                            "reason": f"feature extractor unavailable: {extractor}"})
            continue
        results += call_metric(metric, given)
    return results


def feature_extractor(dataset: str, spec: Any = None, progress: bool = False) -> Any:
    """The in-project extractor for ``dataset`` (trained once on its training split, cached),
    or the exception that prevented it, which FD/KD then report as their error. With
    ``spec``, the split is read as the spec says (``train.data_root``, image size)."""
    try:
        from evaluator.data.datasets import load_dataset, spec_dataset
        from evaluator.measure.features import extractor_for
        data = (spec_dataset(spec, "train") if spec is not None
                else load_dataset(dataset, split="train"))
        return extractor_for(data, progress=progress)
    except Exception as e:  # noqa: BLE001 - recorded as the FD/KD result
        return e


def speed_stats(model: Any, spec: Any, device: Any) -> dict[str, Any]:
    """Parameter count and forward FLOPs per sample (torch's FlopCounterMode, if it can)."""
    import torch

    from evaluator.measure.profile import count_flops

    n_params = sum(p.numel() for p in model.parameters())
    try:
        c, s = spec.image.channels, spec.image.size
        x = torch.zeros(1, c, s, s, device=device)
        t = torch.zeros(1, dtype=torch.long, device=device)
        flops = count_flops(model, x, t)
    except Exception:  # noqa: BLE001 - FLOPs are a nicety; complex ops may be uncountable
        flops = None
    return {"params": n_params, "flops_per_sample": flops,
            "flops_note": "torch.utils.flop_counter (matmul/conv only; FFTs not counted)"}
