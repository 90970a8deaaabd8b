// Every enum-valued setting's allowed values, in one place: the run parameters' zod schema (trainParams.ts), the API
// contract's other enums (contract.ts), the CLI's option choices and help text (cli/main.ts, cli/commands), and the
// renderer's pickers all take them from here, so a value added or dropped changes every check at once. Node-free
// and import-free (the renderer loads it as it is).

/** Base weight format: 4-bit NF4 with double quantization, or full precision. */
export const QUANT_MODES = ['nf4', 'none'] as const
export type QuantMode = (typeof QUANT_MODES)[number]

/** Where to compute; auto picks the GPU when one is usable. */
export const BACKENDS = ['auto', 'cpu', 'cuda'] as const
export type BackendChoice = (typeof BACKENDS)[number]

/** TRL's DPO loss types we implement (docs/reference/dpo-loss.md). */
export const LOSS_TYPES = ['sigmoid', 'ipo', 'hinge', 'robust'] as const
export type LossType = (typeof LOSS_TYPES)[number]

/** Optimizers (docs/reference/optimizer.md): the notebook's bitsandbytes 8-bit paged AdamW, or fp32 AdamW. */
export const OPTIMIZERS = ['paged_adamw_8bit', 'adamw'] as const
export type OptimizerKind = (typeof OPTIMIZERS)[number]

/** Qwen3-style templates' enable_thinking: the template's default, True or False. */
export const THINKING_MODES = ['default', 'on', 'off'] as const

/** The linear layers a LoRA can target (PEFT's names). */
export const LINEAR_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const
export type LinearTarget = (typeof LINEAR_TARGETS)[number]

/** Weight dtypes of a merged-model export (absent or 'auto': the base model's). */
export const MERGE_DTYPES = ['float32', 'bfloat16', 'float16'] as const
export type MergeDtype = (typeof MERGE_DTYPES)[number]

/** What a merged export folds the adapter into; auto: the base the run trained on. */
export const MERGE_BASES = ['auto', 'original', 'nf4'] as const

/** GGUF file types we write (docs/gguf.md), and the ones written when none are named. */
export const GGUF_FILE_TYPES = ['F16', 'Q8_0', 'Q4_0', 'F32'] as const
export type GgufFileType = (typeof GGUF_FILE_TYPES)[number]
export const DEFAULT_GGUF_FILE_TYPES: readonly GgufFileType[] = ['F16', 'Q8_0', 'Q4_0']

/** `dpo-studio sft --answers`: train on the chosen answers only, or on both sides. */
export const SFT_ANSWERS = ['chosen', 'both'] as const
