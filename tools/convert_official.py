#!/usr/bin/env python3
"""Convert an official RBNN PyTorch checkpoint into an rbnn safetensors checkpoint.

The official code (lmbxmu/RBNN, cifar/main.py) saves ``checkpoint.pth.tar`` and
``model_best.pth.tar`` as a dict with 'epoch', 'model', 'state_dict', 'best_prec1' and
'parameters'. Only 'state_dict' is kept. Names stay as they are (conv1.weight,
layer1.0.conv1.R1, bn1.num_batches_tracked, ...) after removing the 'module.' prefix that
nn.DataParallel adds; floating tensors are stored as float32 and integer ones (the BatchNorm
counters) as int64, the layout rbnn reads. Metadata: format = rbnn-checkpoint,
format_version = 1, model, and where known dataset, official_epoch (epochs completed) and
official_best_top1. The result is a weights-only checkpoint: rbnn can evaluate it or start
training from it, not resume the official run's optimizer.

Usage:
    python3 tools/convert_official.py model_best.pth.tar resnet20.safetensors
    python3 tools/convert_official.py ckpt.pth.tar out.safetensors --model resnet18_1w1a \\
        --dataset cifar10

--model is needed only when the checkpoint does not name its model. The official ImageNet code
(imagenet/main.py) names its models resnet18_1w1a and resnet34_1w1a, like the CIFAR ones; rbnn
calls them resnet18_1w1a_imagenet and resnet34_1w1a_imagenet. A state dict with the ImageNet
ResNets' tensors (a 7x7 conv1, fc and the unused bn3) is recorded under rbnn's name (and dataset
imagenet unless --dataset says otherwise); the tensor names inside are the official ones either
way:
    python3 tools/convert_official.py resnet18_imagenet.pth.tar r18.safetensors A file saved by a recent
PyTorch is read with torch.load(weights_only=True), which runs no code from the file; older
files may need --trust-pickle (full unpickling: only for files you trust).

Needs: torch (to read .pth.tar) and safetensors; numpy comes with either. On a machine
without a GPU the CPU build of torch is enough:
    pip install torch --index-url https://download.pytorch.org/whl/cpu
    pip install safetensors
"""

import argparse
import os
import sys

FORMAT = "rbnn-checkpoint"
FORMAT_VERSION = "1"
DATAPARALLEL_PREFIX = "module."
# The official ImageNet models' names (imagenet/models_imagenet/resnet.py) and rbnn's.
IMAGENET_MODELS = {
    "resnet18_1w1a": "resnet18_1w1a_imagenet",
    "resnet34_1w1a": "resnet34_1w1a_imagenet",
}


def fail(message):
    print(f"convert_official: error: {message}", file=sys.stderr)
    sys.exit(1)


def to_numpy(name, value):
    """A tensor (torch or numpy) as a contiguous numpy array: float32 or int64."""
    import numpy as np

    if hasattr(value, "detach"):  # a torch tensor or Parameter
        value = value.detach().cpu()
        # bfloat16 has no numpy twin: widen in torch first.
        if value.is_floating_point():
            value = value.float()
        value = value.numpy()
    array = np.asarray(value)
    # np.array(..., order="C") keeps 0-d scalars 0-d (ascontiguousarray would make them 1-d).
    if array.dtype.kind == "f":
        return np.array(array, dtype=np.float32, order="C")
    if array.dtype.kind in "iub":
        return np.array(array, dtype=np.int64, order="C")
    raise ValueError(f"tensor {name!r} has dtype {array.dtype}, expected float or integer")


def extract_state_dict(checkpoint):
    """The model's state dict from a loaded checkpoint: its 'state_dict' entry (the official
    layout), or the checkpoint itself when it already maps names to tensors."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"expected a dict, found {type(checkpoint).__name__}")
    if "state_dict" in checkpoint:
        state = checkpoint["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"'state_dict' is a {type(state).__name__}, expected a dict")
        return state
    if checkpoint and all(hasattr(v, "shape") for v in checkpoint.values()):
        return checkpoint
    raise ValueError(
        "no 'state_dict' in the checkpoint (keys: " + ", ".join(map(str, checkpoint)) + ")"
    )


def is_imagenet_state(tensors):
    """Whether a state dict is an official ImageNet ResNet's: a 7x7 conv1, fc and the unused bn3
    (the CIFAR resnet18_1w1a has a 3x3 conv1 and 'linear')."""
    conv1 = tensors.get("conv1.weight")
    return (
        conv1 is not None
        and conv1.ndim == 4
        and tuple(conv1.shape[2:]) == (7, 7)
        and "fc.weight" in tensors
        and "bn3.weight" in tensors
    )


def rbnn_model_name(model, tensors):
    """rbnn's name for the official `model` whose state dict is `tensors`."""
    imagenet = is_imagenet_state(tensors)
    if imagenet:
        name = IMAGENET_MODELS.get(model, model)
        if name not in IMAGENET_MODELS.values():
            raise ValueError(
                f"the state dict is an ImageNet ResNet's (7x7 conv1, fc, bn3), not {model!r}'s: "
                "pass --model " + " or ".join(IMAGENET_MODELS.values())
            )
        return name
    if model in IMAGENET_MODELS.values():
        raise ValueError(
            f"{model} is an ImageNet ResNet, but the state dict has no 7x7 conv1, fc and bn3"
        )
    return model


def convert(checkpoint, model=None, dataset=None):
    """Returns (tensors: name -> numpy array, metadata: str -> str) for a loaded checkpoint."""
    state = extract_state_dict(checkpoint)
    tensors = {}
    for name, value in state.items():
        # DataParallel wraps the model: every name starts with 'module.'.
        clean = name[len(DATAPARALLEL_PREFIX):] if name.startswith(DATAPARALLEL_PREFIX) else name
        if clean in tensors:
            raise ValueError(f"tensor {clean!r} appears twice (with and without 'module.')")
        tensors[clean] = to_numpy(name, value)
    if not tensors:
        raise ValueError("the state dict is empty")

    model = model or checkpoint.get("model")
    if not model:
        raise ValueError("the checkpoint does not name its model: pass --model, e.g. resnet20_1w1a")
    model = rbnn_model_name(str(model), tensors)
    if dataset is None and is_imagenet_state(tensors):
        dataset = "imagenet"
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model}
    if dataset:
        metadata["dataset"] = dataset
    if "epoch" in checkpoint:
        metadata["official_epoch"] = str(int(checkpoint["epoch"]))
    if "best_prec1" in checkpoint:
        metadata["official_best_top1"] = repr(float(checkpoint["best_prec1"]))
    return tensors, metadata


def load_checkpoint(path, trust_pickle):
    try:
        import torch
    except ImportError:
        fail(
            "reading a PyTorch checkpoint needs torch; install the CPU build with\n"
            "  pip install torch --index-url https://download.pytorch.org/whl/cpu"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as e:  # torch raises several types for unreadable or unsafe files
        hint = "" if trust_pickle else (
            "\n(if the file is from a trusted source and was saved by an old PyTorch, "
            "retry with --trust-pickle)"
        )
        fail(f"cannot read {path}: {e}{hint}")


def save(tensors, metadata, out):
    try:
        from safetensors.numpy import save_file
    except ImportError:
        fail("writing safetensors needs the safetensors package: pip install safetensors")
    # Write beside the target, then rename: an interrupted run never leaves a torn file.
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert an official RBNN .pth.tar checkpoint to rbnn safetensors."
    )
    parser.add_argument("checkpoint", help="the official checkpoint (.pth.tar)")
    parser.add_argument("output", help="the safetensors file to write")
    parser.add_argument("--model", help="model name, when the checkpoint has none")
    parser.add_argument("--dataset", help="dataset name to record (e.g. cifar10)")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="unpickle fully (runs code from the file: trusted files only)",
    )
    args = parser.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        fail(f"{args.checkpoint}: no such file")
    checkpoint = load_checkpoint(args.checkpoint, args.trust_pickle)
    try:
        tensors, metadata = convert(checkpoint, args.model, args.dataset)
    except ValueError as e:
        fail(f"{args.checkpoint}: {e}")
    named = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if args.model and named and IMAGENET_MODELS.get(named, named) != metadata["model"]:
        print(
            f"convert_official: note: the checkpoint says model {checkpoint['model']!r}; "
            f"recording {args.model!r} as asked",
            file=sys.stderr,
        )
    save(tensors, metadata, args.output)
    ints = [n for n, a in tensors.items() if a.dtype.kind == "i"]
    print(
        f"wrote {args.output}: {len(tensors)} tensors ({len(ints)} int64), "
        f"model {metadata['model']}"
    )


if __name__ == "__main__":
    main()
