"""DenseNet-BC as the DICE/ReAct repositories define it (``models/densenet.py``, Huang et al.'s CIFAR variant), the
model most CIFAR OOD papers use; loaded in the tests through ``factory = "densenet_bc.py:DenseNet3"``."""

import math

import torch
import torch.nn.functional as F
from torch import nn


class BottleneckBlock(nn.Module):
    def __init__(self, in_planes, out_planes, dropRate=0.0):
        super().__init__()
        inter_planes = out_planes * 4
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, inter_planes, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(inter_planes)
        self.conv2 = nn.Conv2d(
            inter_planes, out_planes, kernel_size=3, padding=1, bias=False
        )
        self.droprate = dropRate

    def forward(self, x):
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class TransitionBlock(nn.Module):
    def __init__(self, in_planes, out_planes, dropRate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False)

    def forward(self, x):
        out = self.conv1(self.relu(self.bn1(x)))
        return F.avg_pool2d(out, 2)


class DenseBlock(nn.Module):
    def __init__(self, nb_layers, in_planes, growth_rate, block, dropRate=0.0):
        super().__init__()
        self.layer = nn.Sequential(
            *[block(in_planes + i * growth_rate, growth_rate) for i in range(nb_layers)]
        )

    def forward(self, x):
        return self.layer(x)


class DenseNet3(nn.Module):
    def __init__(self, depth, num_classes, growth_rate=12, reduction=0.5):
        super().__init__()
        in_planes = 2 * growth_rate
        n = int((depth - 4) / 3 / 2)
        self.conv1 = nn.Conv2d(3, in_planes, kernel_size=3, padding=1, bias=False)
        self.block1 = DenseBlock(n, in_planes, growth_rate, BottleneckBlock)
        in_planes = in_planes + n * growth_rate
        self.trans1 = TransitionBlock(in_planes, math.floor(in_planes * reduction))
        in_planes = math.floor(in_planes * reduction)
        self.block2 = DenseBlock(n, in_planes, growth_rate, BottleneckBlock)
        in_planes = in_planes + n * growth_rate
        self.trans2 = TransitionBlock(in_planes, math.floor(in_planes * reduction))
        in_planes = math.floor(in_planes * reduction)
        self.block3 = DenseBlock(n, in_planes, growth_rate, BottleneckBlock)
        in_planes = in_planes + n * growth_rate
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(in_planes, num_classes)
        self.in_planes = in_planes

    def forward(self, x):
        out = self.conv1(x)
        out = self.trans1(self.block1(out))
        out = self.trans2(self.block2(out))
        out = self.block3(out)
        out = self.relu(self.bn1(out))
        out = F.avg_pool2d(out, 8)
        out = out.view(-1, self.in_planes)
        return self.fc(out)


class NotAModel:
    def __init__(self, **kwargs):
        pass


def raises(**kwargs):
    raise ValueError("this factory always fails")


class NoHead(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))
