#!/usr/bin/env python3
"""Computes the reference sentence embeddings of tests/data/minilm_reference.json
with Hugging Face transformers and PyTorch (not with aimcsim), once:

    pip install torch transformers tokenizers
    scripts/fetch-assets.sh
    python3 scripts/minilm_reference.py > tests/data/minilm_reference.json

The model is the fetched all-MiniLM-L6-v2 (BertModel), run in FP32 on the
CPU; the embedding is sentence-transformers' recipe for this model: mean of
the last hidden states over the tokens (no padding: one sentence at a time),
then L2 normalisation. Token ids come from the model's tokenizer.json with
padding turned off.
"""
import hashlib
import json
import os
import sys

import torch
import tokenizers
import transformers

cache = os.environ.get("AIMCSIM_ASSETS", os.path.expanduser("~/.cache/aimcsim/assets"))
model_dir = os.path.join(cache, "minilm")

SENTENCES = [
    # Three of the UCI sentences (imdb.json items 0 and 3, yelp.json item 0).
    "A very, very, very slow-moving, aimless movie about a distressed, drifting young man.  ",
    "Very little music or anything to speak of.  ",
    "Wow... Loved this place.",
    # Edge cases for the tokenizer: case, accents, digits, a word split into
    # word pieces, punctuation runs, a CJK character and an empty string.
    "The PCM tiles drift: 10 years later, GDC re-scales the outputs!!!",
    "Café naïve résumé — über-excellent.",
    "unaffordable hyperparameterization 東京",
    "",
]


def main():
    torch.set_grad_enabled(False)
    tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    model = transformers.BertModel.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    out = {
        "about": "all-MiniLM-L6-v2 sentence embeddings computed by scripts/minilm_reference.py "
        f"with torch {torch.__version__}, transformers {transformers.__version__}, "
        f"tokenizers {tokenizers.__version__}",
        "model_sha256": sha,
        "sentences": [],
    }
    for s in SENTENCES:
        ids = tok.encode(s).ids
        t = torch.tensor([ids], dtype=torch.long)
        h = model(input_ids=t, attention_mask=torch.ones_like(t)).last_hidden_state[0]
        e = h.mean(dim=0)
        e = e / e.norm()
        out["sentences"].append(
            {"text": s, "ids": ids, "embedding": [float(f"{v:.7g}") for v in e.tolist()]}
        )
    json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
