#!/usr/bin/python3
"""PyTorch eager reference for bench/lesion.ts: the single-block deletion sweep.

Loads fixtures/train.py's build(NAME) with the saved state_dict, then evaluates the intact
network and, for each block in --blocks, the network with that block deleted: the block's
forward becomes its shortcut alone (relu(s(x)) after a post-activation block, s(x) for a
pre-activation one) and its residual branch is not computed. One full forward per
configuration and batch, under torch.no_grad(), on the same IDX data and normalisation as
reslens. Prints one JSON line on stdout:

    {"seconds", "errors": [...], "correct": [...], "total", "peak_rss_mb", ...}

With --torchvision NAME the model is torchvision's NAME with the weights of torch.manual_seed(0)
(as fixtures/export_resnet50.py --model NAME exports it) and --data a folder of class folders of
224x224 images, decoded with PIL and normalised with ImageNet's mean and std; the images must be
model-sized, so that no resize implementation differs from reslens's.

errors[i] is the error rate of configuration i (0 = intact, then one per --blocks entry);
seconds run from after `import torch` to the last batch (model build, weights, data included).
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))
import train  # noqa: E402  (the model definitions, MEAN/STD and the IDX reader)


def deleted_forward(block):
    """The block with its residual branch deleted: only the shortcut (and post-activation)."""
    import torchvision.models.resnet as tv
    if isinstance(block, (tv.BasicBlock, tv.Bottleneck)):
        d = block.downsample
        return lambda x: F.relu(x if d is None else d(x))
    s = (lambda x: x) if block.proj is None else block.proj
    if isinstance(block, train.PreActBlock):
        return lambda x: s(x)
    if isinstance(block, (train.BasicBlock, train.ResNeXtBlock)):
        if isinstance(block, train.BasicBlock) and not block.use_shortcut:
            sys.exit("plain networks have no residual branch to delete")
        return lambda x: F.relu(s(x))
    sys.exit(f"unsupported block type {type(block).__name__}")


def torchvision_model(name):
    """torchvision's NAME with seed-0 weights, and its residual blocks in order."""
    import torchvision
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    return model, [b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]


def image_folder(folder, limit):
    """Class folders (sorted: labels 0, 1, ...) of 224x224 images, as normalised NCHW floats."""
    from PIL import Image
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    files = [(os.path.join(folder, c, f), i) for i, c in enumerate(sorted(d for d in os.listdir(folder) if not d.startswith(".")))
             for f in sorted(os.listdir(os.path.join(folder, c))) if not f.startswith(".")]
    if limit:
        files = files[:limit]
    xs = []
    for path, _ in files:
        img = Image.open(path).convert("RGB")
        if img.size != (224, 224):
            sys.exit(f"{path}: {img.size[0]}x{img.size[1]}; the bench's images must be 224x224 (no resize)")
        xs.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    x = (torch.stack(xs).float() / 255 - mean) / std
    return x, torch.tensor([i for _, i in files], dtype=torch.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", help="a fixtures/train.py model name, e.g. resnet20")
    ap.add_argument("--weights", help="state_dict .pt file")
    ap.add_argument("--torchvision", metavar="NAME", help="torchvision's NAME with seed-0 weights instead")
    ap.add_argument("--data", required=True, help="IDX images file (labels found next to it), or with "
                    "--torchvision a folder of class folders of 224x224 images")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--blocks", default="", help="comma-separated block indices to delete one at a time")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    t0 = time.perf_counter()

    if args.torchvision:
        model, model_blocks = torchvision_model(args.torchvision)
        x, y = image_folder(args.data, args.limit)
    else:
        if not (args.arch and args.weights):
            sys.exit("--arch and --weights, or --torchvision")
        model, _ = train.build(args.arch)
        state = torch.load(args.weights, map_location="cpu")
        model.load_state_dict(state)
        model.eval()
        if not hasattr(model, "blocks"):
            sys.exit(f"{args.arch}: not a CifarNet with .blocks")
        model_blocks = model.blocks
        x = train.read_idx(train.find_file(args.data))
        y = train.read_idx(train.find_file(train.labels_path(args.data)))
        if args.limit:
            x, y = x[:args.limit], y[:args.limit]
        x = train.to_tensor(np.ascontiguousarray(x))
        y = torch.from_numpy(y.astype(np.int64))
    blocks = [int(b) for b in args.blocks.split(",") if b != ""]
    for b in blocks:
        if not 0 <= b < len(model_blocks):
            sys.exit(f"--blocks: {b} out of range (the model has {len(model_blocks)} blocks)")
    data_seconds = time.perf_counter() - t0

    configs = [None] + blocks
    correct = []
    with torch.no_grad():
        for deleted in configs:
            if deleted is not None:
                blk = model_blocks[deleted]
                blk.forward = deleted_forward(blk)  # instance attribute shadows the method
            try:
                c = 0
                for i in range(0, len(x), args.batch):
                    logits = model(x[i:i + args.batch])
                    c += int((logits.argmax(1) == y[i:i + args.batch]).sum())
                correct.append(c)
            finally:
                if deleted is not None:
                    del model_blocks[deleted].forward
                    assert model_blocks[deleted].forward.__func__ is type(model_blocks[deleted]).forward
    seconds = time.perf_counter() - t0
    n = len(y)
    print(json.dumps({
        "seconds": seconds,
        "data_seconds": data_seconds,
        "errors": [1 - c / n for c in correct],
        "correct": correct,
        "total": n,
        "configs": ["intact"] + [f"delete {b}" for b in blocks],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }), flush=True)


if __name__ == "__main__":
    main()
