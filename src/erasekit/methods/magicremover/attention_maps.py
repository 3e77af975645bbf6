"""Cross-attention maps of the words to remove (MagicRemover arXiv:2310.02848, Sec. 3.3 and 4.1).

A *target* names what to remove: objects separated by commas, each described by one or more words
(``"dog"``, ``"red car"``, ``"dog, ball"``). Each word maps to the prompt's token indices through the
pipeline's tokenizer (a word may span several tokens). A word's map at one UNet call is the sum over every
cross-attention layer (8/16/32/64 grids on SD1.5 at 512 px) and over the word's tokens of the head-averaged
attention probabilities, each layer's map resized bilinearly to the latent grid, then divided by its maximum
(Sec. 4.1's "accumulate … and perform normalization"). Open choices, as the paper leaves them:

* the common resolution is the latent grid (64×64 at 512 px), not the image's: Eq. 8 multiplies the map
  with ∇_{z_t}, which lives on that grid;
* normalisation divides by the maximum, so 1 marks the strongest response and 0 stays 0;
* an object of several words multiplies its words' maps (Eq. 9), several objects add (Algorithm 1, line 6).

Without a target, the prompt's words less stop-words and caption words ("photo", "picture") form one object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ...types import InvalidInputError

# Function words and the caption template's own words ("a photo of …"): never the thing to remove. Written
# here because the usual lists (scikit-learn's, NLTK's) lack the caption words and are not dependencies.
STOP_WORDS = frozenset(
    [
        "a", "an", "the", "this", "that", "these", "those", "of", "in", "on", "at", "to", "from", "by",
        "with", "and", "or", "for", "into", "onto", "over", "under", "near", "next", "its", "is", "are", "be",
        "there", "here", "some", "any", "photo", "photograph", "picture", "image", "shot", "view", "scene",
    ]
)


@dataclass(frozen=True)
class Target:
    """What to remove: ``words[m]`` are object m's words, ``tokens[m][n]`` word n's token indices."""

    words: tuple[tuple[str, ...], ...]
    tokens: tuple[tuple[tuple[int, ...], ...], ...]


def default_target(prompt: str) -> str:
    """The prompt's words less :data:`STOP_WORDS`, as one object (``"a photo of a brown dog"`` → ``"brown
    dog"``)."""
    words = [w for w in re.findall(r"[\w'-]+", prompt.lower()) if w not in STOP_WORDS]
    if not words:
        raise InvalidInputError(f"the prompt {prompt!r} names nothing to remove: give a target word")
    return " ".join(words)


def word_token_indices(tokenizer: Any, prompt: str, word: str) -> tuple[int, ...]:
    """Positions in the prompt's token sequence (start token at 0, as the UNet sees it) of every occurrence of
    ``word``'s tokens; an error naming the word when the prompt does not contain it."""
    prompt_ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    word_ids = tokenizer(word, add_special_tokens=False).input_ids
    if not word_ids:
        raise InvalidInputError(f"target word {word!r} has no tokens")
    n = len(word_ids)
    found = [i + k for i in range(len(prompt_ids) - n + 1) if prompt_ids[i:i + n] == word_ids
             for k in range(n)]
    if not found:
        raise InvalidInputError(f"target word {word!r} is not in the prompt {prompt!r}: the target names "
                                "words of the prompt (e.g. prompt 'a photo of a dog', target 'dog')")
    return tuple(found)


def parse_target(tokenizer: Any, prompt: str, target: str | None) -> Target:
    """``target`` (commas between objects, spaces between an object's words) resolved against ``prompt``."""
    text = default_target(prompt) if target is None or not target.strip() else target
    objects = tuple(tuple(part.split()) for part in text.lower().split(",") if part.strip())
    if not objects:
        raise InvalidInputError(f"target {target!r} names no word")
    tokens = tuple(tuple(word_token_indices(tokenizer, prompt, w) for w in words) for words in objects)
    return Target(objects, tokens)


def layer_grid(tokens: int, latent_size: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) grid of a layer with ``tokens`` query tokens, for a latent of ``latent_size`` (each UNet
    level halves both sides)."""
    height, width = latent_size
    factor = round((height * width / tokens) ** 0.5)
    if factor < 1 or (height // factor) * (width // factor) != tokens:
        raise ValueError(f"{tokens} query tokens do not tile a {height}×{width} latent")
    return height // factor, width // factor


def word_map(maps: Mapping[str, torch.Tensor], row: int, tokens: tuple[int, ...],
             latent_size: tuple[int, int]) -> torch.Tensor:
    """One word's normalised map (h×w latent grid): Σ over layers and tokens of the head-averaged
    probabilities ``maps[layer][row, :, token]``, each resized bilinearly to the latent grid, divided by its
    maximum. ``maps`` is one UNet call's :class:`~erasekit.diffusion.attention.AttentionStore` entry with
    ``average_heads=True`` (``(batch, q, k)`` per layer); differentiable when the store keeps the graph."""
    total: torch.Tensor | None = None
    for probs in maps.values():
        grid = layer_grid(probs.shape[1], latent_size)
        per_token = probs[row][:, list(tokens)].sum(dim=-1).reshape(1, 1, *grid)
        resized = F.interpolate(per_token, size=latent_size, mode="bilinear", align_corners=False)[0, 0]
        total = resized if total is None else total + resized
    if total is None:
        raise ValueError("no cross-attention map was recorded")
    return total / total.max()


def target_maps(maps: Mapping[str, torch.Tensor], row: int, target: Target,
                latent_size: tuple[int, int]) -> list[list[torch.Tensor]]:
    """:func:`word_map` for every word of every object: ``result[m][n]`` is A_{t,k} of object m's word n."""
    return [[word_map(maps, row, tokens, latent_size) for tokens in words] for words in target.tokens]


def removal_weight(maps: list[list[torch.Tensor]]) -> torch.Tensor:
    """Σ_m Π_n A_{m,n} (Eq. 9, Algorithm 1 line 6): the map that reweights the guidance gradient."""
    return torch.stack([torch.stack(words).prod(dim=0) for words in maps]).sum(dim=0)
