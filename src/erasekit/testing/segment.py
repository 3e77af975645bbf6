"""Tiny segmenters in their real checkpoint layouts: SAM 3, Grounding DINO, SAM 2 and SAM v1 (transformers).

Each writer builds the real transformers class from a tiny config with seeded random weights and saves it with
``save_pretrained`` (plus its tokenizer / processor files), so the adapters in :mod:`erasekit.masking` and
:mod:`erasekit.data.savp_models` load it through the path a real checkpoint takes. SAVP's tests and the
text -> mask tests share these.
"""

from __future__ import annotations

import json
from pathlib import Path

# Words the tiny Grounding DINO's BERT vocabulary spells (anything else becomes [UNK]).
GDINO_WORDS = (
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    ".",
    "a",
    "the",
    "add",
    "remove",
    "red",
    "ball",
    "box",
    "toy",
    "white",
    "square",
    "cup",
    "spoon",
    "rocket",
    "camera",
    "man",
)
SAM3_SIDE = 112  # the tiny SAM 3's square input (the real one takes 1008)
SAM_SIDE = 64  # the tiny SAM v1's square input (the real one takes 1024)


def write_tiny_grounding_dino(folder: str | Path, *, seed: int = 0) -> Path:
    """GroundingDinoForObjectDetection (Swin + BERT) with its processor, as
    ``IDEA-Research/grounding-dino-*``."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(GDINO_WORDS) + "\n")
    torch.manual_seed(seed)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(  # type: ignore[call-arg]  # out_features: a property setter
            image_size=64,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=BertConfig(
            vocab_size=len(GDINO_WORDS),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=8,
        num_feature_levels=4,
        encoder_n_points=1,
        decoder_n_points=1,
        max_text_len=32,
    )
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 128}),
        tokenizer=BertTokenizer(str(vocab)),
    ).save_pretrained(folder)
    return folder


def write_tiny_sam2(folder: str | Path, *, seed: int = 0) -> Path:
    """Sam2Model (Hiera) at a 128² input and ``preprocessor_config.json``, as ``facebook/sam2.1-hiera-*``
    ships them. The processor file is written as a dict (Sam2ImageProcessor needs torchvision to be built),
    with its own defaults except the tiny input and mask sizes."""
    import torch
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    hiera = Sam2HieraDetConfig(
        hidden_size=8,
        num_attention_heads=1,
        image_size=[128, 128],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[8, 16, 32, 64],
        num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[4, 4, 4, 4],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4],
    )
    config = Sam2Config(
        vision_config=Sam2VisionConfig(
            backbone_config=hiera,
            backbone_channel_list=[64, 32, 16, 8],
            backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
            fpn_hidden_size=32,
        ),
        prompt_encoder_config=Sam2PromptEncoderConfig(
            hidden_size=32, image_size=128, patch_size=16, mask_input_channels=4
        ),
        mask_decoder_config=Sam2MaskDecoderConfig(
            hidden_size=32, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
        ),
    )
    torch.manual_seed(seed)
    folder = Path(folder)
    Sam2Model(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Sam2ImageProcessorFast", "processor_class": "Sam2Processor",
        "size": {"height": 128, "width": 128}, "mask_size": {"height": 32, "width": 32},
        "image_mean": list(IMAGENET_DEFAULT_MEAN), "image_std": list(IMAGENET_DEFAULT_STD),
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "do_convert_rgb": True, "resample": 2,
    }, indent=2))
    return folder


def write_tiny_sam(folder: str | Path, *, seed: int = 0) -> Path:
    """SamModel (SAM v1, ViT) and ``preprocessor_config.json`` at a 64² input, as ``facebook/sam-vit-*``."""
    import torch
    from transformers import (
        SamConfig,
        SamMaskDecoderConfig,
        SamModel,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    config = SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=1,
            image_size=SAM_SIDE,
            patch_size=8,
            output_channels=16,
            global_attn_indexes=[1],
            mlp_dim=16,
            window_size=4,
            num_pos_feats=8,
        ),
        prompt_encoder_config=SamPromptEncoderConfig(
            hidden_size=16, image_size=SAM_SIDE, patch_size=8, mask_input_channels=4
        ),
        mask_decoder_config=SamMaskDecoderConfig(
            hidden_size=16, mlp_dim=16, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=16
        ),
    )
    torch.manual_seed(seed)
    folder = Path(folder)
    SamModel(config).save_pretrained(folder)
    # preprocessor_config.json as the Hub's SAM checkpoints ship it (written as a dict: transformers 5 saves a
    # processor as processor_config.json), with SamImageProcessor's defaults except the tiny input size.
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "SamImageProcessor",
                "processor_class": "SamProcessor",
                "do_resize": True,
                "size": {"longest_edge": SAM_SIDE},
                "resample": 2,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": list(IMAGENET_DEFAULT_MEAN),
                "image_std": list(IMAGENET_DEFAULT_STD),
                "do_pad": True,
                "pad_size": {"height": SAM_SIDE, "width": SAM_SIDE},
                "do_convert_rgb": True,
            },
            indent=2,
        )
    )
    return folder


def write_tiny_sam3(folder: str | Path, *, seed: int = 0) -> Path:
    """Sam3Model (ViT + CLIP text + DETR + mask head), its CLIP tokenizer and ``preprocessor_config.json``,
    as ``facebook/sam3``. The image processor's file is written as a dict (Sam3ImageProcessor needs
    torchvision to be built), with Sam3ImageProcessor's own defaults except the tiny input size."""
    import torch
    from transformers import CLIPTextConfig, Sam3Config, Sam3Model, Sam3VisionConfig, Sam3ViTConfig
    from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD

    from .pipelines import _clip_tokenizer

    folder = Path(folder)
    tokenizer = _clip_tokenizer()
    n = len(tokenizer)
    config = Sam3Config(
        vision_config=Sam3VisionConfig(
            backbone_config=Sam3ViTConfig(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=SAM3_SIDE,
                patch_size=14,
                window_size=4,
                global_attn_indexes=[1],
                pretrain_image_size=SAM3_SIDE,
            ),
            fpn_hidden_size=32,
            backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
        ),
        text_config=CLIPTextConfig(
            vocab_size=n,
            hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=32,
            bos_token_id=n - 2,
            eos_token_id=n - 1,
            pad_token_id=n - 1,
        ),
        geometry_encoder_config={
            "hidden_size": 32,
            "num_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        detr_encoder_config={
            "hidden_size": 32,
            "num_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        detr_decoder_config={
            "hidden_size": 32,
            "num_layers": 1,
            "num_queries": 8,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )
    torch.manual_seed(seed)
    Sam3Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "Sam3ImageProcessor",
                "processor_class": "Sam3Processor",
                "size": {"height": SAM3_SIDE, "width": SAM3_SIDE},
                "mask_size": {"height": 32, "width": 32},
                "do_resize": True,
                "resample": 2,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": list(IMAGENET_STANDARD_MEAN),
                "image_std": list(IMAGENET_STANDARD_STD),
                "do_convert_rgb": True,
            },
            indent=2,
        )
    )
    return folder


__all__ = [
    "GDINO_WORDS",
    "SAM3_SIDE",
    "SAM_SIDE",
    "write_tiny_grounding_dino",
    "write_tiny_sam",
    "write_tiny_sam2",
    "write_tiny_sam3",
]
