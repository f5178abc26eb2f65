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


def torch_module(net: Network, conv_weight=None, batchnorm: bool = False, dropout: float = 0.0,
                 weights: dict | None = None, activation=None):
    """A torch.nn.Module computing ``net`` with float weights, Caffe semantics.
    ``conv_weight(name, conv)``, if given, supplies each convolution's weight tensor at run
    time (weight sharing: a codebook lookup) instead of the module's own ``conv.weight``.

    ``batchnorm`` trains with a BatchNorm after every convolution but the classifier;
    ``weights()`` folds each into its convolution, so the network the integer paths see is the
    plain description. ``dropout`` is applied to the classifier's input while training (the
    paper's dropout after fire9). ``weights`` ({name: (w, b)}, Model.float_weights) start the
    convolutions from a model's float weights instead of the initialisation.
    ``activation(name, x)``, if given, is applied to every tensor the integer paths hold with a
    scale of its own (golden.quantize.activation_tensors: each Conv's output, each squeeze,
    each Fire's concatenated output, each bypass sum) and returns what the network goes on
    with: the quantisation of fine-tuning through the integer activations."""
    torch = require_torch()
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleDict()
            final = net.convs()[-1].name
            for spec in net.convs():
                conv = nn.Conv2d(spec.in_channels, spec.out_channels, (spec.kh, spec.kw),
                                 spec.stride, (spec.ph, spec.pw), groups=spec.groups)
                # torchvision's SqueezeNet initialisation; the final ReLU'd classifier starts
                # small with a positive bias so that it is not dead at step one.
                if spec.name == final:
                    nn.init.normal_(conv.weight, 0.0, 0.01)
                    nn.init.constant_(conv.bias, 0.1)
                else:
                    nn.init.kaiming_uniform_(conv.weight)
                    nn.init.zeros_(conv.bias)
                self.convs[spec.name.replace("/", "__")] = conv
            self.norms = nn.ModuleDict()
            if batchnorm:
                for spec in net.convs():
                    if spec.name != final:
                        self.norms[spec.name.replace("/", "__")] = nn.BatchNorm2d(
                            spec.out_channels)
            self.final = final
            self.drop = nn.Dropout(dropout) if dropout else None

        def conv(self, spec, x):
            key = spec.name.replace("/", "__")
            c = self.convs[key]
            if spec.name == self.final and self.drop is not None:
                x = self.drop(x)
            if conv_weight is None:
                y = c(x)
            else:
                y = nn.functional.conv2d(x, conv_weight(spec.name, c), c.bias, c.stride,
                                         c.padding, groups=c.groups)
            if key in self.norms:
                y = self.norms[key](y)
            return torch.relu(y) if spec.relu else y

        def forward(self, x):
            act = activation or (lambda name, y: y)
            t = {"input": x}
            for i, node in enumerate(net.nodes):
                src = [t[s] for s in net.node_inputs(i)]
                if isinstance(node, Conv):
                    t[node.name] = act(node.name, self.conv(node.convs()[0], src[0]))
                elif isinstance(node, Fire):
                    sq, e1, e3 = node.convs()
                    s = act(sq.name, self.conv(sq, src[0]))
                    t[node.name] = act(node.name,
                                       torch.cat([self.conv(e1, s), self.conv(e3, s)], 1))
                elif isinstance(node, MaxPool):
                    t[node.name] = nn.functional.max_pool2d(src[0], node.kernel, node.stride,
                                                            ceil_mode=True)
                elif isinstance(node, Bypass):
                    other = self.conv(node.convs()[0], src[1]) if node.complex else src[1]
                    t[node.name] = act(node.name, torch.relu(src[0] + other))
                elif isinstance(node, GlobalAvgPool):
                    t[node.name] = src[0].mean(dim=(2, 3))
            return t[net.output_node]

        def weights(self):
            """Each convolution's (weight, bias) as float32 arrays, BatchNorm folded in with its
            running statistics: w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(...) + beta."""
            out = {}
            for spec in net.convs():
                key = spec.name.replace("/", "__")
                w = self.convs[key].weight.detach().double()
                b = self.convs[key].bias.detach().double()
                if key in self.norms:
                    bn = self.norms[key]
                    g = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
                    w = w * g.reshape(-1, 1, 1, 1)
                    b = (b - bn.running_mean.double()) * g + bn.bias.detach().double()
                out[spec.name] = (w.float().numpy(), b.float().numpy())
            return out

    module = Net()
    if weights is not None:
        with torch.no_grad():
            for name, (w, b) in weights.items():
                conv = module.convs[name.replace("/", "__")]
                conv.weight.copy_(torch.tensor(w))
                conv.bias.copy_(torch.tensor(b))
    return module
