"""A literal, functional transcription of the release forward pass (the spec in docs/).

Written independently of ``tdanet.model`` from the specification, operating on a raw
state_dict, so that tests can compare the package's model against it for any
configuration. The attention is run exactly as the release runs it: a
``torch.nn.MultiheadAttention`` in sequence-first layout fed batch-first data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gln(x: torch.Tensor, sd: dict, name: str) -> torch.Tensor:
    mean = x.mean(dim=(1, 2), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(1, 2), keepdim=True)
    y = (x - mean) / torch.sqrt(var + 1e-8)
    return y * sd[f"{name}.gamma"].view(1, -1, 1) + sd[f"{name}.beta"].view(1, -1, 1)


def conv(x, sd, name, stride=1, groups=1, bias=True):
    w = sd[f"{name}.weight"]
    return F.conv1d(
        x,
        w,
        sd.get(f"{name}.bias") if bias else None,
        stride=stride,
        padding=(w.shape[-1] - 1) // 2,
        groups=groups,
    )


def prelu(x, sd, name):
    return F.prelu(x, sd[f"{name}.weight"])


def la(local, glob, sd, name, channels):
    def cn(x, part):
        return gln(
            conv(x, sd, f"{name}.{part}.conv", groups=channels, bias=False),
            sd,
            f"{name}.{part}.norm",
        )

    t = local.shape[-1]
    return cn(local, "local_embedding") * F.interpolate(
        torch.sigmoid(cn(glob, "global_act")), size=t, mode="nearest"
    ) + F.interpolate(cn(glob, "global_embedding"), size=t, mode="nearest")


def attention(x, sd, name, channels, heads, pe):
    mha = torch.nn.MultiheadAttention(channels, heads)  # sequence-first, as released
    mha.in_proj_weight.data.copy_(sd[f"{name}.attn.in_proj_weight"])
    mha.in_proj_bias.data.copy_(sd[f"{name}.attn.in_proj_bias"])
    mha.out_proj.weight.data.copy_(sd[f"{name}.attn.out_proj.weight"])
    mha.out_proj.bias.data.copy_(sd[f"{name}.attn.out_proj.bias"])
    mha.eval()
    h = x.transpose(1, 2)  # (B, T, N) handed to a (T, B, N) layer
    h = (
        F.layer_norm(
            h, (channels,), sd[f"{name}.attn_in_norm.weight"], sd[f"{name}.attn_in_norm.bias"]
        )
        + pe[:, : h.shape[1]]
    )
    out = mha(h, h, h)[0]
    out = F.layer_norm(out + out, (channels,), sd[f"{name}.norm.weight"], sd[f"{name}.norm.bias"])
    return out.transpose(1, 2)


def ublock(x, sd, args, pe, heads):
    n, depth = args["in_channels"], args["upsampling_depth"]
    p = "sm.unet"
    y = prelu(
        gln(conv(x, sd, f"{p}.proj_1x1.conv"), sd, f"{p}.proj_1x1.norm"), sd, f"{p}.proj_1x1.act"
    )
    levels = [gln(conv(y, sd, f"{p}.spp_dw.0.conv", groups=n), sd, f"{p}.spp_dw.0.norm")]
    for k in range(1, depth):
        levels.append(
            gln(
                conv(levels[-1], sd, f"{p}.spp_dw.{k}.conv", stride=2, groups=n),
                sd,
                f"{p}.spp_dw.{k}.norm",
            )
        )
    g = torch.zeros_like(levels[-1])
    for lev in levels:
        g = g + F.adaptive_avg_pool1d(lev, levels[-1].shape[-1])
    g = g + attention(g, sd, f"{p}.globalatt.attn", n, heads, pe)
    m = gln(
        conv(g, sd, f"{p}.globalatt.mlp.fc1.conv", bias=False), sd, f"{p}.globalatt.mlp.fc1.norm"
    )
    m = F.relu(conv(m, sd, f"{p}.globalatt.mlp.dwconv", groups=2 * n))
    m = gln(
        conv(m, sd, f"{p}.globalatt.mlp.fc2.conv", bias=False), sd, f"{p}.globalatt.mlp.fc2.norm"
    )
    g = g + m
    fused = [la(levels[i], g, sd, f"{p}.loc_glo_fus.{i}", n) for i in range(depth)]
    s = depth - 1
    out = None
    for i in range(s - 1, -1, -1):
        if i == s - 1:
            out = la(fused[i], fused[i - 1], sd, f"{p}.last_layer.{i}", n)
        else:
            out = la(fused[i], out, sd, f"{p}.last_layer.{i}", n)
    return conv(out, sd, f"{p}.res_conv") + x


def release_forward(wave: torch.Tensor, sd: dict, args: dict, heads: int = 8) -> torch.Tensor:
    """(1, T) -> (1, C, T), one utterance, as the release computes it."""
    assert wave.shape[0] == 1, "the release is only correct at batch size 1"
    L = args["enc_kernel_size"] * args["sample_rate"] // 1000
    hop = L // 4
    c = args["num_sources"]
    t = wave.shape[-1]
    rest = L - (hop + t % L) % L
    x = F.pad(wave, (0, rest))
    x = F.pad(x, (L - hop, L - hop)).unsqueeze(1)
    e = F.conv1d(x, sd["encoder.weight"], stride=hop, padding=L // 2)
    h = F.conv1d(gln(e, sd, "ln"), sd["bottleneck.weight"], sd["bottleneck.bias"])
    pe = sd["sm.unet.globalatt.attn.pos_enc.pe"]
    y = ublock(h, sd, args, pe, heads)
    for _ in range(1, args["num_blocks"]):
        z = F.conv1d(
            h + y, sd["sm.concat_block.0.weight"], sd["sm.concat_block.0.bias"], groups=h.shape[1]
        )
        y = ublock(F.prelu(z, sd["sm.concat_block.1.weight"]), sd, args, pe, heads)
    y = F.prelu(y, sd["mask_net.0.weight"])
    masks = F.relu(F.conv1d(y, sd["mask_net.1.weight"], sd["mask_net.1.bias"]))
    masks = masks.view(1, c, -1, masks.shape[-1])
    masked = (masks * e.unsqueeze(1)).view(1, -1, e.shape[-1])
    out = F.conv_transpose1d(masked, sd["decoder.weight"], stride=hop, padding=L // 2)
    return out[..., L - hop : -(rest + L - hop)]
