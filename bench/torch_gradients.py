#!/usr/bin/python3
"""PyTorch eager reference for bench/gradients.ts: path-restricted gradients on a given plan.

    /usr/bin/python3 bench/torch_gradients.py --arch resnet20 --weights fixtures/weights/resnet20.pt \\
        --data fixtures/data/t10k-images-idx3-ubyte --plan plan.json [--threads N]

The plan is reslens's (makePlan): {batchSize, batches: [[image index...]...],
samples: [{k, blocks, batch}...]}. Per batch: ONE forward through the intact network (eval
mode) that keeps its autograd graph, then per sample one backward,
torch.autograd.grad(loss, x0, retain_graph=True), where x0 is the first block's input and
the mean cross-entropy is the loss. The routing is set per sample without a new forward:
each summand of each block's Add passes through a Gate, an identity autograd Function whose
backward reads a shared per-block switch and returns the gradient or None. None is an
undefined gradient, so autograd skips the gated-off branch's backward kernels (it does not
push zeros through them). The ReLU after the Add (post-activation blocks) sits after both
gates, so it masks both routes alike, as in the intact network.

Prints one JSON line on stdout: {"seconds", "setup_seconds", "norms": [...] (plan order),
"losses", "peak_rss_mb", "threads", "torch"}; or {"skipped": "why"} when torch is missing.
seconds covers the batches (forward + every sample's backward); setup_seconds the model build,
weights and data.
"""
import argparse
import json
import os
import resource
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # the benchmark skips PyTorch rather than failing
    print(json.dumps({"skipped": f"{sys.executable}: {e}"}), flush=True)
    sys.exit(0)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))
import train  # noqa: E402  (the model definitions, MEAN/STD and the IDX reader)


class Gate(torch.autograd.Function):
    """Identity forward; backward passes the gradient when switch[0] == want, else None."""

    @staticmethod
    def forward(ctx, x, switch, want):
        ctx.switch, ctx.want = switch, want
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return (g if ctx.switch[0] == ctx.want else None), None, None


def gated_block(block, x, switch):
    """The block's forward; switch[0] True routes the backward through the residual branch only."""
    s, f, post = train.block_parts(block, x)
    z = Gate.apply(s, switch, False) + Gate.apply(f, switch, True)
    return post(z) if post else z


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", required=True, help="a fixtures/train.py model name, e.g. resnet20")
    ap.add_argument("--weights", required=True, help="state_dict .pt file (or a train.py checkpoint)")
    ap.add_argument("--data", required=True, help="IDX images file (labels found next to it)")
    ap.add_argument("--plan", required=True, help="JSON plan from bench/gradients.ts")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--float64", action="store_true",
                    help="run in double precision: a reference for both float32 implementations")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    t0 = time.perf_counter()
    with open(args.plan) as f:
        plan = json.load(f)

    model, _ = train.build(args.arch)
    state = torch.load(args.weights, map_location="cpu")
    if isinstance(state, dict) and "model" in state and "epoch" in state:
        state = state["model"]  # a training checkpoint (.fixtures-work/NAME.pt) holds the state_dict
    model.load_state_dict(state)
    model.eval()
    dtype = torch.float64 if args.float64 else torch.float32
    model.to(dtype)
    if not hasattr(model, "blocks"):
        sys.exit(f"{args.arch}: not a CifarNet with .blocks")
    for p in model.parameters():
        p.requires_grad_(False)  # only the gradient at x0 is wanted, as in reslens
    n = len(model.blocks)
    x_all = train.to_tensor(np.ascontiguousarray(train.read_idx(train.find_file(args.data)))).to(dtype)
    y_all = torch.from_numpy(train.read_idx(train.find_file(train.labels_path(args.data))).astype(np.int64))
    switches = [[False] for _ in range(n)]
    by_batch = {}
    for i, s in enumerate(plan["samples"]):
        by_batch.setdefault(s["batch"], []).append(i)
    setup_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    norms = [None] * len(plan["samples"])
    losses = []
    for b in sorted(by_batch):
        idx = torch.tensor(plan["batches"][b], dtype=torch.long)
        x, y = x_all[idx], y_all[idx]
        with torch.no_grad():
            x0 = model.stem(x)
            if model.stem_bn is not None:
                x0 = F.relu(model.stem_bn(x0))
        x0.requires_grad_(True)
        h = x0
        for blk, sw in zip(model.blocks, switches):
            h = gated_block(blk, h, sw)
        if model.final_bn is not None:
            h = F.relu(model.final_bn(h))
        loss = F.cross_entropy(model.fc(F.adaptive_avg_pool2d(h, 1).flatten(1)), y)
        losses.append(loss.item())
        for j in by_batch[b]:
            chosen = set(plan["samples"][j]["blocks"])
            for i, sw in enumerate(switches):
                sw[0] = i in chosen
            (g,) = torch.autograd.grad(loss, x0, retain_graph=True)
            norms[j] = torch.linalg.vector_norm(g, dtype=torch.float64).item()
        del loss, h, x0  # free the graph before the next batch
    seconds = time.perf_counter() - t1
    print(json.dumps({
        "seconds": seconds,
        "setup_seconds": setup_seconds,
        "norms": norms,
        "losses": losses,
        "blocks": n,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dtype": str(dtype).replace("torch.", ""),
    }), flush=True)


if __name__ == "__main__":
    main()
