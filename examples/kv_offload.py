#!/usr/bin/python3
"""KV-cache offload to strata with a small transformer (random weights, CPU torch).

Request 1 prefills a long prompt and stores each layer's attention K/V for every full
block of tokens in strata, keyed by the hash chain of docs/kv-keys.md (one chain per
layer, chained block to block). Request 2 shares most of that prompt: one MATCH_PREFIX
finds how many blocks are cached (and pins them), one batch GET loads them straight
into tensors, and only the rest of the prompt is computed. The script checks that the
logits equal those of a run without the cache, and prints both prefill times.

    /usr/bin/python3 examples/kv_offload.py --port 6380

Runs in `make test` (tests/integration/test_native.py)."""
import argparse
import hashlib
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "client",
                                "python"))
import strata  # noqa: E402

LAYERS, MODEL, HEADS, VOCABULARY, MAX_POSITIONS = 4, 256, 4, 1000, 4096
HEAD = MODEL // HEADS
BLOCK = 64  # tokens per KV block


class TinyTransformer(torch.nn.Module):
    """A decoder-only transformer whose forward pass can start from cached K/V."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(VOCABULARY, MODEL)
        self.positions = torch.nn.Embedding(MAX_POSITIONS, MODEL)
        self.layers = torch.nn.ModuleList()
        for _ in range(LAYERS):
            self.layers.append(torch.nn.ModuleDict({
                "norm1": torch.nn.LayerNorm(MODEL), "qkv": torch.nn.Linear(MODEL, 3 * MODEL),
                "out": torch.nn.Linear(MODEL, MODEL), "norm2": torch.nn.LayerNorm(MODEL),
                "up": torch.nn.Linear(MODEL, 4 * MODEL), "down": torch.nn.Linear(4 * MODEL, MODEL),
            }))
        self.norm = torch.nn.LayerNorm(MODEL)
        self.head = torch.nn.Linear(MODEL, VOCABULARY)

    def forward(self, tokens, past=None):
        """TOKENS: 1-D ids following the PAST tokens. PAST: per layer (K, V) of shape
        [heads, past_tokens, head] or None. Returns (logits, per-layer (K, V) of all
        tokens so far)."""
        start = past[0][0].shape[1] if past else 0
        count = tokens.shape[0]
        x = self.embedding(tokens) + self.positions(torch.arange(start, start + count))
        mask = torch.ones(count, start + count, dtype=torch.bool).tril(diagonal=start)
        present = []
        for index, layer in enumerate(self.layers):
            q, k, v = layer["qkv"](layer["norm1"](x)).split(MODEL, dim=-1)
            q, k, v = (t.view(count, HEADS, HEAD).transpose(0, 1) for t in (q, k, v))
            if past:
                k = torch.cat([past[index][0], k], dim=1)
                v = torch.cat([past[index][1], v], dim=1)
            present.append((k, v))
            scores = (q @ k.transpose(1, 2)) / HEAD ** 0.5
            attention = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v
            x = x + layer["out"](attention.transpose(0, 1).reshape(count, MODEL))
            x = x + layer["down"](torch.nn.functional.gelu(layer["up"](layer["norm2"](x))))
        return self.head(self.norm(x)), present


def layer_chains(tokens, model_id):
    """Per layer, the keys of the full blocks of TOKENS (docs/kv-keys.md)."""
    return [strata.kv_chain(tokens, BLOCK, extra=f"{model_id}/layer{layer}".encode())
            for layer in range(LAYERS)]


def store_kv(client, chains, present, fingerprint):
    """Puts every full block of every layer: [2, heads, BLOCK, head] float32 each."""
    items = []
    for layer in range(LAYERS):
        k, v = present[layer]
        for block, key in enumerate(chains[layer]):
            piece = torch.stack([k[:, block * BLOCK:(block + 1) * BLOCK],
                                 v[:, block * BLOCK:(block + 1) * BLOCK]]).contiguous()
            items.append({"key": key, "value": piece, "fingerprint": fingerprint,
                          "parent": chains[layer][block - 1] if block else None})
    statuses = client.put_batch(items)
    assert statuses == [0] * len(items), statuses


def load_kv(client, chains, fingerprint):
    """MATCH_PREFIX on layer 0's chain (pinning what it finds), then one batch GET of
    those blocks for every layer into tensors. Returns (blocks, past)."""
    blocks = client.match_prefix(chains[0], lease_ms=30000)
    if blocks == 0:
        return 0, None
    buffers = [torch.empty(2, HEADS, blocks * BLOCK, HEAD) for _ in range(LAYERS)]
    pieces = [[torch.empty(2, HEADS, BLOCK, HEAD) for _ in range(blocks)] for _ in range(LAYERS)]
    results = client.get_batch([{"key": chains[layer][block], "buffer": pieces[layer][block],
                                 "fingerprint": fingerprint}
                                for layer in range(LAYERS) for block in range(blocks)])
    assert all(status == 0 for status, _length in results), results
    for layer in range(LAYERS):
        torch.cat(pieces[layer], dim=2, out=buffers[layer])
    client.unpin_batch([key for chain in chains for key in chain[:blocks]])
    return blocks, [(buffers[layer][0], buffers[layer][1]) for layer in range(LAYERS)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6380)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--prompt", type=int, default=1024, help="tokens in the first prompt")
    arguments = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = TinyTransformer().eval()
    model_id = "tiny-transformer-v1"
    # What produced the values: model, layout, dtype. A GET naming another fingerprint
    # gets an error instead of another model's attention state.
    fingerprint = hashlib.sha256(f"{model_id}/[2,{HEADS},{BLOCK},{HEAD}]/float32".encode()
                                 ).digest()[:16]
    generator = torch.Generator().manual_seed(1)
    first = torch.randint(0, VOCABULARY, (arguments.prompt,), generator=generator)
    shared = arguments.prompt - arguments.prompt // 8
    second = torch.cat([first[:shared],
                        torch.randint(0, VOCABULARY, (arguments.prompt // 8 + 37,),
                                      generator=generator)])

    client = strata.Client(host=arguments.host, port=arguments.port,
                           namespace=arguments.namespace)
    with torch.no_grad():
        # Request 1: prefill and offload its KV blocks.
        _logits, present = model(first)
        store_kv(client, layer_chains(first.tolist(), model_id), present, fingerprint)

        # Request 2, without strata: the whole prompt is computed.
        began = time.perf_counter()
        reference, _ = model(second)
        without = time.perf_counter() - began

        # Request 2, with strata: load the shared prefix, compute the rest.
        began = time.perf_counter()
        blocks, past = load_kv(client, layer_chains(second.tolist(), model_id), fingerprint)
        logits, _ = model(second[blocks * BLOCK:], past)
        with_cache = time.perf_counter() - began

    tail = reference[blocks * BLOCK:]
    difference = (logits - tail).abs().max().item()
    print(f"prompt: {second.shape[0]} tokens, {blocks} blocks of {BLOCK} loaded from strata "
          f"({blocks * BLOCK} tokens)")
    print(f"prefill without strata: {without * 1000:.1f} ms")
    print(f"prefill with strata: {with_cache * 1000:.1f} ms")
    print(f"largest logit difference: {difference:.2e}")
    expected_blocks = shared // BLOCK
    if blocks != expected_blocks:
        sys.exit(f"expected {expected_blocks} cached blocks, found {blocks}")
    if not torch.allclose(logits, tail, atol=1e-4, rtol=1e-4):
        sys.exit("logits differ from the run without the cache")
    print("logits match the run without the cache")
    client.close()


if __name__ == "__main__":
    main()
