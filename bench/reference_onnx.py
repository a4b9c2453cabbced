#!/usr/bin/python3
"""Reference network for `covidct bench classify`: the paper's ResNet50V2 + FPN built in PyTorch.

Built from the architecture's description alone (Keras's ResNet50V2 pre-activation bottlenecks with
the stride on the last block of each stage; the authors' pyramid on the conv4_block1 and
conv5_block1 pre-activations and post_relu, with 1x1 laterals, nearest UpsampleLike, concatenated
levels, 3x3 convolutions to 256 filters, P6/P7 at stride 2, and a Dense(2) head per level joined by
a Dense(2, softmax)), with none of covidct's code: PyTorch's own layers, random weights, exported
by torch.onnx.export (opset 13, constant folding, the batch dimension free). covidct's benchmark
runs the result in the same onnxruntime-node session as its own export, as the independent
baseline of its CPU engine.

Input: NCHW float32 [N, 1, S, S] (PyTorch's layout; covidct's graph takes NHWC and transposes once).
Prints JSON: { "path", "parameters", "inputShape", "nodes", "opCounts", "versions" }; "parameters"
counts as Keras does (weights, biases, and BatchNormalization's four vectors), 34,058,656 at the
paper's 512x512 and width 1 (--count-only prints just that, exporting nothing). Run with Debian's
/usr/bin/python3 (python3-torch, python3-onnx):

  /usr/bin/python3 bench/reference_onnx.py OUT.onnx [--input-size 512] [--width 1]
"""
import argparse
import collections
import json
import math
import platform
import sys

import torch
from torch import nn
from torch.nn import functional as F

EPS = 1.001e-5  # Keras's BatchNormalization epsilon in ResNet V2


def scaled(filters, width):
    """Filter count times the width multiplier, rounded half up, at least 1 (as covidct's quick builds)."""
    return max(1, int(math.floor(filters * width + 0.5)))


class Bottleneck(nn.Module):
    """Pre-activation bottleneck: BN-ReLU, 1x1, BN-ReLU, 3x3 (stride here), BN-ReLU, 1x1 to 4x, plus shortcut."""

    def __init__(self, cin, filters, stride, conv_shortcut):
        super().__init__()
        self.preact = nn.BatchNorm2d(cin, eps=EPS)
        out = 4 * filters
        if conv_shortcut:
            self.shortcut = nn.Conv2d(cin, out, 1, stride=stride)
        elif stride > 1:
            self.shortcut = nn.MaxPool2d(1, stride=stride)
        else:
            self.shortcut = None
        self.conv1 = nn.Conv2d(cin, filters, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters, eps=EPS)
        self.conv2 = nn.Conv2d(filters, filters, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters, eps=EPS)
        self.conv3 = nn.Conv2d(filters, out, 1)
        self.conv_shortcut = conv_shortcut

    def forward(self, x):
        pre = F.relu(self.preact(x))
        if self.conv_shortcut:
            short = self.shortcut(pre)
        elif self.shortcut is not None:
            short = self.shortcut(x)
        else:
            short = x
        y = F.relu(self.bn1(self.conv1(pre)))
        y = F.relu(self.bn2(self.conv2(y)))
        return short + self.conv3(y), pre


class Stage(nn.Module):
    """Keras stack2: block 1 widens with a 1x1 shortcut, the last block carries the stride."""

    def __init__(self, cin, filters, blocks, stride):
        super().__init__()
        mods = [Bottleneck(cin, filters, 1, True)]
        for _ in range(2, blocks):
            mods.append(Bottleneck(4 * filters, filters, 1, False))
        mods.append(Bottleneck(4 * filters, filters, stride, False))
        self.blocks = nn.ModuleList(mods)

    def forward(self, x):
        first_pre = None
        for i, block in enumerate(self.blocks):
            x, pre = block(x)
            if i == 0:
                first_pre = pre
        return x, first_pre


class Head(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.dense = nn.Linear(features, 2)

    def forward(self, x):
        return F.relu(self.dense(torch.flatten(x, 1)))


class ResNet50V2Fpn(nn.Module):
    def __init__(self, size, width):
        super().__init__()
        s = lambda f: scaled(f, width)  # noqa: E731
        self.stem = nn.Conv2d(1, s(64), 7, stride=2, padding=3)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = Stage(s(64), s(64), 3, 2)
        self.conv3 = Stage(4 * s(64), s(128), 4, 2)
        self.conv4 = Stage(4 * s(128), s(256), 6, 2)
        self.conv5 = Stage(4 * s(256), s(512), 3, 1)
        self.post_bn = nn.BatchNorm2d(4 * s(512), eps=EPS)
        f = s(256)
        self.c5_reduced = nn.Conv2d(4 * s(512), f, 1)
        self.p5 = nn.Conv2d(f, f, 3, padding=1)
        self.c4_reduced = nn.Conv2d(4 * s(256), f, 1)
        self.p4 = nn.Conv2d(2 * f, f, 3)
        self.c3_reduced = nn.Conv2d(4 * s(128), f, 1)
        self.p3 = nn.Conv2d(3 * f, f, 3)
        self.p6 = nn.Conv2d(4 * s(512), f, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(f, f, 3, stride=2, padding=1)
        # Spatial sizes of the levels, from the input size (strides 2 × 2 × 2 × 2 × 2, conv5 none).
        c3 = size // 16
        c4 = size // 32
        sides = {
            "p3": c3 - 2,
            "p4": c4 - 2,
            "p5": c4,
            "p6": (c4 + 1) // 2,
            "p7": ((c4 + 1) // 2 + 1) // 2,
        }
        self.heads = nn.ModuleList(Head(f * sides[k] * sides[k]) for k in ("p3", "p4", "p5", "p6", "p7"))
        self.predictions = nn.Linear(10, 2)

    def forward(self, x):
        x = self.pool(self.stem(x))
        x, _ = self.conv2(x)
        x, _ = self.conv3(x)
        x, c3 = self.conv4(x)
        x, c4 = self.conv5(x)
        c5 = F.relu(self.post_bn(x))
        c5_reduced = self.c5_reduced(c5)
        p5_up = F.interpolate(c5_reduced, size=c4.shape[-2:], mode="nearest")
        p5 = self.p5(c5_reduced)
        p4_cat = torch.cat([p5_up, self.c4_reduced(c4)], 1)
        p4_up = F.interpolate(p4_cat, size=c3.shape[-2:], mode="nearest")
        p4 = self.p4(p4_cat)
        p3 = self.p3(torch.cat([p4_up, self.c3_reduced(c3)], 1))
        p6 = self.p6(c5)
        p7 = self.p7(F.relu(p6))
        heads = [h(level) for h, level in zip(self.heads, (p3, p4, p5, p6, p7))]
        return F.softmax(self.predictions(torch.cat(heads, 1)), dim=1)


def keras_parameters(model):
    """Parameters as Keras counts them: BatchNormalization's moving mean and variance included."""
    n = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n += m.running_mean.numel() + m.running_var.numel()
    return n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="where to write the .onnx file")
    parser.add_argument("--input-size", type=int, default=512, help="square input side (multiple of 32, >= 96)")
    parser.add_argument("--width", type=float, default=1.0, help="filter multiplier (quick checks only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count-only", action="store_true", help="print the parameter count only, export nothing")
    args = parser.parse_args()
    if args.out is None and not args.count_only:
        sys.exit("OUT: expected the path of the .onnx file to write (or --count-only)")
    if args.input_size < 96 or args.input_size % 32 != 0:
        sys.exit(f"--input-size: expected a multiple of 32 and at least 96, got {args.input_size}")

    torch.manual_seed(args.seed)
    model = ResNet50V2Fpn(args.input_size, args.width).eval()
    if args.count_only:
        print(json.dumps({"parameters": keras_parameters(model), "inputShape": [1, args.input_size, args.input_size]}))
        return
    # Random running statistics, so that BatchNormalization is not the identity the defaults make it.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    example = torch.rand(1, 1, args.input_size, args.input_size) * 2000
    with torch.no_grad():
        torch.onnx.export(
            model,
            example,
            args.out,
            opset_version=13,
            do_constant_folding=True,
            input_names=["input"],
            output_names=["probabilities"],
            dynamic_axes={"input": {0: "N"}, "probabilities": {0: "N"}},
        )

    import onnx

    graph = onnx.load(args.out).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    print(
        json.dumps(
            {
                "path": args.out,
                "parameters": keras_parameters(model),
                "inputShape": [1, args.input_size, args.input_size],
                "nodes": len(graph.node),
                "opCounts": dict(sorted(ops.items())),
                "versions": {
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "onnx": onnx.__version__,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
