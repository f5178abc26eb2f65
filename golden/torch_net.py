"""A network description as a PyTorch module (the optional ``train`` extra): training the
digits model and fine-tuning shared weights (golden/finetune.py) both use it."""

from __future__ import annotations

from .network import Bypass, Conv, Fire, GlobalAvgPool, MaxPool, Network

__all__ = ["torch_module", "require_torch", "MissingExtraError"]


class MissingExtraError(RuntimeError):
    """An optional dependency (PyTorch) that a command needs is not installed."""


def require_torch():
    try:
        import torch
    except ImportError as e:
        raise MissingExtraError("this needs PyTorch, the optional 'train' extra: "
                           ".venv/bin/pip install -e '.[train]' (or make train-digits)") from e
    return torch


def torch_module(net: Network, conv_weight=None):
    """A torch.nn.Module computing ``net`` with float weights, Caffe semantics.
    ``conv_weight(name, conv)``, if given, supplies each convolution's weight tensor at run
    time (weight sharing: a codebook lookup) instead of the module's own ``conv.weight``."""
    torch = require_torch()
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleDict()
            final = net.convs()[-1].name
            for spec in net.convs():
                conv = nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, spec.stride,
                                 spec.pad)
                # torchvision's SqueezeNet initialisation; the final ReLU'd classifier starts
                # small with a positive bias so that it is not dead at step one.
                if spec.name == final:
                    nn.init.normal_(conv.weight, 0.0, 0.01)
                    nn.init.constant_(conv.bias, 0.1)
                else:
                    nn.init.kaiming_uniform_(conv.weight)
                    nn.init.zeros_(conv.bias)
                self.convs[spec.name.replace("/", "__")] = conv

        def conv(self, spec, x):
            c = self.convs[spec.name.replace("/", "__")]
            if conv_weight is None:
                y = c(x)
            else:
                y = nn.functional.conv2d(x, conv_weight(spec.name, c), c.bias, c.stride,
                                         c.padding)
            return torch.relu(y) if spec.relu else y

        def forward(self, x):
            t = {"input": x}
            for i, node in enumerate(net.nodes):
                src = [t[s] for s in net.node_inputs(i)]
                if isinstance(node, Conv):
                    t[node.name] = self.conv(node.convs()[0], src[0])
                elif isinstance(node, Fire):
                    sq, e1, e3 = node.convs()
                    s = self.conv(sq, src[0])
                    t[node.name] = torch.cat([self.conv(e1, s), self.conv(e3, s)], 1)
                elif isinstance(node, MaxPool):
                    t[node.name] = nn.functional.max_pool2d(src[0], node.kernel, node.stride,
                                                            ceil_mode=True)
                elif isinstance(node, Bypass):
                    other = self.conv(node.convs()[0], src[1]) if node.complex else src[1]
                    t[node.name] = torch.relu(src[0] + other)
                elif isinstance(node, GlobalAvgPool):
                    t[node.name] = src[0].mean(dim=(2, 3))
            return t[net.output_node]

        def weights(self):
            return {spec.name: (self.convs[spec.name.replace("/", "__")].weight.detach().numpy(),
                                self.convs[spec.name.replace("/", "__")].bias.detach().numpy())
                    for spec in net.convs()}

    return Net()
