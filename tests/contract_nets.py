"""A tiny net that follows the model contract of docs/DESIGN.md (stem, blocks with ``stage`` and
``residual_out``, ``get_classifier``), shared by the AGC tests (tests/ is on pytest's pythonpath)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class TinyBlock(nn.Module):
    def __init__(self, ch, stage):
        super().__init__()
        self.stage = stage
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        self.gain = nn.Parameter(torch.ones(ch))  # 1-d, like the WS gain
        self.skip_gain = nn.Parameter(torch.tensor(0.5))  # 0-d, like the SkipInit gain
        self.residual_out = nn.Identity()

    def forward(self, x):
        out = self.residual_out(self.conv(F.relu(x)) * self.gain.view(1, -1, 1, 1))
        return x + self.skip_gain * out


class TinyNet(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1))
        self.blocks = nn.Sequential(TinyBlock(8, 0), TinyBlock(8, 1), TinyBlock(8, 1))
        self.fc = nn.Linear(8, num_classes)

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def backward(model, seed=0, batch=4):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(batch, 3, 6, 6, generator=g), torch.randint(0, 5, (batch,), generator=g)
    F.cross_entropy(model(x), y).backward()

