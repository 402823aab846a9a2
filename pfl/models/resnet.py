"""ResNet-18 with GroupNorm for 32x32 images (CIFAR-100).

He et al. 2016's 18-layer network in its CIFAR form (3x3 stem, no max-pool,
four stages of two basic blocks, widths w, 2w, 4w, 8w with w = 64: 11.2 M
parameters at 100 classes). BatchNorm is replaced by GroupNorm (Hsieh et al.
2020): batch statistics differ between clients and do not average well, and
norm layers without running buffers keep every model a pure function of its
parameters, as vmap needs.
"""

from __future__ import annotations

from torch import Tensor, nn


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = _norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = _norm(cout, groups)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout, groups))

    def forward(self, x: Tensor) -> Tensor:
        out = self.norm1(self.conv1(x)).relu()
        out = self.norm2(self.conv2(out))
        return (out + self.shortcut(x)).relu()


class ResNet18(nn.Module):
    """Inputs [B, C, H, W] (or [B, H, W] grey); logits [B, num_classes]."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 64, groups: int = 2):
        super().__init__()
        if width < 1 or groups < 1:
            raise ValueError("ResNet18: width and groups must be >= 1")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), _norm(width, groups), nn.ReLU())
        blocks, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2 ** i
            blocks += [BasicBlock(cin, cout, stride, groups), BasicBlock(cout, cout, 1, groups)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor, key: Tensor | None = None) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = self.blocks(self.stem(x))
        return self.head(x.mean(dim=(-2, -1)))
