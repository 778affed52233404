"""Every choice a user or a formula makes is one of these enums, never a free string."""
from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A string enum whose value is what users type on the command line."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> list[str]:
        return [m.value for m in cls]


class DType(Choice):
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"
    UINT8 = "uint8"
    NF4 = "nf4"
    FP4 = "fp4"

    @property
    def bytes(self) -> float:
        """Bytes per element (4-bit types pack two per byte)."""
        return _DTYPE_BYTES[self]


_DTYPE_BYTES = {
    DType.FP32: 4, DType.BF16: 2, DType.FP16: 2, DType.INT8: 1, DType.UINT8: 1,
    DType.NF4: 0.5, DType.FP4: 0.5,
}


class Method(Choice):
    FULL = "full"
    LORA = "lora"
    QLORA = "qlora"


class Precision(Choice):
    """How weights are stored and how the forward computes.

    `*-mixed`: fp32 trainable weights, `torch.autocast` computes matmuls in 16 bit.
    `*-true`: weights, gradients and optimizer state all in 16 bit, no autocast.
    """

    FP32 = "fp32"
    BF16_MIXED = "bf16-mixed"
    FP16_MIXED = "fp16-mixed"
    BF16_TRUE = "bf16-true"
    FP16_TRUE = "fp16-true"

    # table lookups, not string tests: estimate() reads these dozens of times per call
    @property
    def compute_dtype(self) -> DType:
        return _COMPUTE_DTYPE[self]

    @property
    def autocast(self) -> bool:
        return self in _AUTOCAST

    @property
    def weight_dtype(self) -> DType:
        """dtype of trainable (and, for full fine-tuning, all) stored weights."""
        return _WEIGHT_DTYPE[self]


_COMPUTE_DTYPE = {p: DType.FP32 if p.value == "fp32" else DType.BF16 if p.value.startswith("bf16") else DType.FP16
                  for p in Precision}
_AUTOCAST = frozenset(p for p in Precision if p.value.endswith("-mixed"))
_WEIGHT_DTYPE = {p: _COMPUTE_DTYPE[p] if p.value.endswith("-true") else DType.FP32 for p in Precision}


class LoraVariant(Choice):
    """LoRA variants from papers that peft does not implement (planner/techniques/lora_variants.py)."""
    NONE = "none"
    DYLORA = "dylora"            # Valipour et al. 2023: a random rank b <= r each step; modelled as LoRA at r
    DELTA_LORA = "delta-lora"    # Zi et al. 2023: W updated by the change of A B; modelled from the paper
    LONGLORA = "longlora"        # Chen et al. 2024: S^2-Attn + trainable embeddings and norms; refused
    ROSA = "rosa"                # Nikdan et al. 2024: sparse + low-rank; refused


class Optimizer(Choice):
    ADAMW = "adamw"                    # torch.optim.AdamW, foreach implementation
    ADAMW_FUSED = "adamw-fused"        # torch.optim.AdamW(fused=True): HF Trainer's default
    ADAMW_8BIT = "adamw-8bit"          # bitsandbytes AdamW8bit
    PAGED_ADAMW_8BIT = "paged-adamw-8bit"
    PAGED_ADAMW = "paged-adamw"        # bitsandbytes PagedAdamW (32-bit states in unified memory)
    ADAFACTOR = "adafactor"            # transformers.optimization.Adafactor as HF Trainer sets it up
    SGD = "sgd"                        # torch.optim.SGD with momentum, foreach
    LION = "lion"                      # bitsandbytes Lion (32-bit)
    # beyond HF's AdamW family [planner/techniques/optimizers.py, docs/readme/optimizers.md]
    GALORE_ADAMW = "galore-adamw"                # galore_torch.GaLoreAdamW (HF optim="galore_adamw")
    TORCHAO_ADAMW_8BIT = "torchao-adamw-8bit"    # torchao.optim.AdamW8bit (HF "adamw_torch_8bit")
    TORCHAO_ADAMW_4BIT = "torchao-adamw-4bit"    # torchao.optim.AdamW4bit (HF "adamw_torch_4bit")
    SCHEDULE_FREE_ADAMW = "schedule-free-adamw"  # schedulefree.AdamWScheduleFree (HF "schedule_free_adamw")
    ADAM_MINI = "adam-mini"                      # adam_mini.Adam_mini (LLaMA-Factory use_adam_mini; no HF name)
    APOLLO_ADAMW = "apollo-adamw"                # apollo_torch.APOLLOAdamW (HF optim="apollo_adamw")
    MUON = "muon"                                # torch.optim.Muon on 2-D parameters + AdamW on the rest
    LORAFA = "lorafa"                            # peft.optimizers.create_lorafa_optimizer: lora_A frozen, B stepped

    @property
    def paged(self) -> bool:
        return self in (Optimizer.PAGED_ADAMW, Optimizer.PAGED_ADAMW_8BIT)

    @property
    def eight_bit(self) -> bool:
        return self in (Optimizer.ADAMW_8BIT, Optimizer.PAGED_ADAMW_8BIT)

    @property
    def low_rank(self) -> bool:
        """Projects targeted 2-D weights' gradients to rank r (optim_target_modules, rank, update_proj_gap)."""
        return self.value.startswith(("galore", "apollo"))

    @property
    def full_only(self) -> bool:
        """Modelled per tensor of a full fine-tuning only (GaLore, torchao, Adam-mini)."""
        return self.low_rank or self.torchao or self in (Optimizer.ADAM_MINI, Optimizer.MUON)

    @property
    def torchao(self) -> bool:
        """torchao's block-wise quantized AdamW (optim_args block_size)."""
        return self.value.startswith("torchao")


class Attention(Choice):
    SDPA = "sdpa"      # torch scaled_dot_product_attention: flash / memory-efficient kernels
    FLASH = "flash"    # flash-attn 2 package (attn_implementation="flash_attention_2")
    EAGER = "eager"    # HF's matmul + softmax implementation: materializes (b, a, s, s) scores


class Loss(Choice):
    HF = "hf"            # transformers ForCausalLMLoss: full logits, upcast to fp32, cross_entropy
    CHUNKED = "chunked"  # fused linear + cross-entropy in chunks (Liger, Unsloth, torchtune): no full logits
    TRL = "trl"          # TRL >= 1.15 SFTTrainer's fused LM head: log-probs of labelled positions only, in tiles
    CHUNKED_OUTPUT = "chunked-output"   # torchtune CEWithChunkedOutputLoss: logits per sequence chunk, upcast chunk by chunk
    CCE = "cce"          # Cut Cross-Entropy (apple/ml-cross-entropy): logits blockwise in SRAM, never in memory
    CHUNKED_NLL = "chunked-nll"   # TRL 1.13-1.14 SFTTrainer's default: labelled positions first, checkpointed 256-row chunks
    CHUNKED_NLL_FP32 = "chunked-nll-fp32"   # TRL 1.8-1.12's: the same, each chunk projected from fp32 copies

    @property
    def trl_chunked(self) -> bool:
        """TRL's SFTTrainer chunked_nll (planner/techniques/chunked_nll.py), in either version's form."""
        return self in (Loss.CHUNKED_NLL, Loss.CHUNKED_NLL_FP32)


class Objective(Choice):
    """What the training step optimizes (TRL's trainers)."""

    SFT = "sft"    # next-token loss on one sequence per example (SFTTrainer, plain Trainer)
    DPO = "dpo"    # DPOTrainer: chosen and rejected sequences in one batch, a frozen reference model
    KTO = "kto"    # KTOTrainer: one completion per example, a no-grad KL forward, a frozen reference model
    ORPO = "orpo"  # trl.experimental ORPOTrainer: chosen and rejected in one batch, full logits, no reference
    GRPO = "grpo"  # GRPOTrainer with HF generate: a generation phase (KV cache), then a fused-head step on completions
    PPO = "ppo"    # PPOTrainer (trl.experimental up to TRL 1.12, removed by huggingface/trl#7020): refused, not modelled
    RM = "rm"      # RewardTrainer: AutoModelForSequenceClassification (num_labels=1), chosen and rejected in one batch

    @property
    def has_reference(self) -> bool:
        """A reference model's log-probs enter the loss (TRL's DPO and KTO trainers)."""
        return self in (Objective.DPO, Objective.KTO)


class TrlVersion(Choice):
    """Which TRL release's preference trainer is planned (--stack-versions picks it; planner/techniques/dpo19.py)."""

    TRL_1_16 = "1.16"   # TRL 1.15-1.16: the fused LM head on the completion positions (gpuplan's default)
    TRL_1_9 = "1.9"     # TRL 1.8-1.12 (read: 1.8.0, 1.9.0, 1.12.0): DPOTrainer on the model's full logits


class Padding(Choice):
    """How a micro-batch's rows are made one length (planner/techniques/masks.py)."""

    NONE = "none"              # every row --seq-len real tokens, no attention mask (as planned before masks)
    LONGEST = "longest"        # padded to the micro-batch's longest sample, with an attention mask (HF/TRL collators)
    MAX_LENGTH = "max-length"  # padded to --seq-len, with an attention mask (axolotl pad_to_sequence_len)


class Packing(Choice):
    """Several samples in one row, told apart by position_ids that restart at 0 per sample."""

    NONE = "none"
    ROWS = "rows"              # rows of --seq-len packed with samples (axolotl sample_packing, torchtune packed)
    FLATTENED = "flattened"    # the micro-batch concatenated into one row of b x --seq-len (TRL padding_free,
    #                            and TRL packing, whose bfd strategy switches padding_free on)


class QuantType(Choice):
    NF4 = "nf4"
    FP4 = "fp4"
    INT8 = "int8"   # LLM.int8() weights, "8-bit LoRA"


class MlpKind(Choice):
    GATED = "gated"  # act(gate(x)) * up(x), then down: Llama, Mistral, Qwen, Gemma, Phi-3
    PLAIN = "plain"  # fc -> act -> proj: GPT-2, GPT-NeoX


class NormKind(Choice):
    RMS = "rmsnorm"
    LAYER = "layernorm"
    LAYER_NO_BIAS = "layernorm-no-bias"   # Cohere: mean-subtracting LayerNorm with a weight only (CohereLayerNorm)


class Phase(Choice):
    FORWARD = "forward"      # live set at the end of the forward pass (loss computed)
    BACKWARD = "backward"    # the largest live set inside backward
    OPTIMIZER = "optimizer"  # live set during optimizer.step()


class RunPhase(Choice):
    """The phases of a whole run, each of which can be the one that runs out of memory. The
    steady-state training step's own peak is per `Phase` (forward, backward, optimizer)."""

    LOAD = "load"              # from_pretrained, quantize-on-load, FSDP init
    FIRST_STEP = "first_step"  # the optimizer allocates its state lazily in step 1
    STEP = "step"              # the steady-state step, from step 2 on
    EVAL = "eval"              # evaluation: no gradients, eval batch, maybe generation
    GENERATE = "generate"      # GRPO's rollouts: generate() on the generation batch, then no-grad log-prob passes
    SAVE = "save"              # checkpoint save: state-dict gathers, merges


class Component(Choice):
    """Where the bytes go. The first six are tensor bytes (allocated); the last two are not."""

    WEIGHTS = "weights"
    GRADIENTS = "gradients"
    OPTIMIZER_STATE = "optimizer_state"
    ACTIVATIONS = "activations"
    LOGITS = "logits"                  # logits, their fp32 upcast and the loss's softmax
    TEMPORARIES = "temporaries"        # optimizer and backward workspaces, casts
    ALLOCATOR_SLACK = "allocator_slack"  # reserved minus allocated
    CUDA_CONTEXT = "cuda_context"      # device total minus reserved: context, cuBLAS, kernels

    @classmethod
    def tensor_components(cls) -> list["Component"]:
        return [cls.WEIGHTS, cls.GRADIENTS, cls.OPTIMIZER_STATE, cls.ACTIVATIONS,
                cls.LOGITS, cls.TEMPORARIES]


class Source(Choice):
    """Which path answered a memory question [DESIGN.md, "Two paths to one answer"]."""

    CLOSED_FORM = "closed-form"   # the planner's formulas
    SIMULATED = "simulated"       # gpuplan.profiler.simulate: the real model and peft method under FakeTensorMode
    FITTED = "fitted"             # c0 + c1 b s + c2 b s^2 fitted to a few simulations (gpuplan.profiler.answer)


class Compile(Choice):
    """`torch.compile` of the model (planner/techniques/compile.py)."""

    NONE = "none"            # eager PyTorch
    INDUCTOR = "inductor"    # torch.compile(model) with its default backend and mode (no CUDA graphs)


class Fp8(Choice):
    """torchao float8 training of the model's linears (planner/techniques/fp8.py)."""

    NONE = "none"                # no fp8 casts
    TENSORWISE = "tensorwise"    # torchao Float8LinearConfig.from_recipe_name("tensorwise"): one scale per tensor
    ROWWISE = "rowwise"          # ... ("rowwise"): one scale per row, power-of-2 scales


class Fp8Linears(Choice):
    """Which nn.Linear modules are converted to torchao's Float8Linear."""

    SKIP_FIRST_LAST = "skip-first-last"   # accelerate convert_model_to_fp8_ao's default filter (accelerate/utils/ao.py)
    ALL = "all"                           # torchao convert_to_float8_training with no module_filter_fn
