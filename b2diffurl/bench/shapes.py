"""The networks' shapes the benchmark builds: SD v1.4's, SD 2.1's and SDXL base's config files, as written.

Each dict is the keyword arguments of the diffusers (UNet2DConditionModel, AutoencoderKL) or transformers
(CLIPTextConfig) class, copied from the checkpoint's own config file; the UNet's ``sample_size`` is set
per resolution (latent = pixels / 8).
"""

# SD v1.4's unet/config.json (sample_size set per resolution: latent = pixels / 8)
SD14_UNET = dict(
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
    act_fn="silu",
    center_input_sample=False,
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    mid_block_scale_factor=1,
)
# SD v1.4's vae/config.json
SD14_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32,
    act_fn="silu",
    scaling_factor=0.18215,
)
# CLIP ViT-L/14's text tower (SD v1.4's text_encoder/config.json)
SD14_TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
)
# stabilityai/stable-diffusion-2-1's unet/config.json (768 px: sample_size 96)
SD21_UNET = dict(
    SD14_UNET,
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
    upcast_attention=True,
)
# its text_encoder/config.json: OpenCLIP ViT-H/14's text tower, 23 of its 24 layers
SD21_TEXT = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=512,
)
# stabilityai/stable-diffusion-xl-base-1.0's unet/config.json (1024 px: sample_size 128)
SDXL_UNET = dict(
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    norm_num_groups=32,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
)
SDXL_VAE = dict(SD14_VAE, scaling_factor=0.13025, force_upcast=True)
# its text_encoder_2/config.json: OpenCLIP ViT-bigG/14's text tower, with its projection
SDXL_TEXT_2 = dict(
    vocab_size=49408,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=1280,
)
BACKBONES = ("sd14", "sd21", "sdxl")
NATIVE_RESOLUTION = {"sd14": 512, "sd21": 768, "sdxl": 1024}
BACKBONE_TEXT = {
    "sd14": "SD v1.4's UNet / VAE / ViT-L/14 text encoder",
    "sd21": "SD 2.1's UNet (v-prediction) / VAE / OpenCLIP ViT-H text encoder",
    "sdxl": "SDXL base's UNet / VAE / ViT-L/14 and OpenCLIP ViT-bigG text encoders",
}
