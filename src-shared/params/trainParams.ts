// The one source of truth for run parameters (docs/architecture.md#house-rules): a zod schema with the notebook's
// defaults, bounds and help text. The renderer builds its forms from PARAM_FIELDS, main and the CLI validate with
// trainParamsSchema, and the engine receives the fully resolved values.
import { z } from 'zod'
import { DEFAULT_SYSTEM_MESSAGE } from '../prompts/chatMessage'

import { BACKENDS, LINEAR_TARGETS, LOSS_TYPES, OPTIMIZERS, QUANT_MODES, THINKING_MODES } from './enumValues'

// The enum values themselves live in enumValues.ts (also the API's and the CLI's); these are the run's names for them.
export { LINEAR_TARGETS, LOSS_TYPES, OPTIMIZERS, THINKING_MODES, type LinearTarget } from './enumValues'

export const trainParamsSchema = z
  .object({
    // --- data (the notebook's data_size / support_ratio rule)
    dataSize: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(50)
      .describe("How many leading rows of the dataset become training pairs (the notebook's data_size)."),
    supportRatio: z
      .number()
      .min(0)
      .max(1)
      .default(0.1)
      .describe('The first int(N × ratio) pairs prefer the "support" answer, the rest prefer "oppose".'),
    // --- DPO
    epochs: z.number().int().min(1).max(100).default(1).describe('Passes over the pairs (num_epoch).'),
    beta: z
      .number()
      .gt(0)
      .max(10)
      .default(0.1)
      .describe('DPO temperature: how strongly the policy may move away from the reference model.'),
    lossType: z
      .enum(LOSS_TYPES)
      .default('sigmoid')
      .describe('sigmoid = DPO; ipo = IPO (length-averaged); hinge = SLiC; robust = noise-robust DPO.'),
    labelSmoothing: z
      .number()
      .min(0)
      .lt(0.5)
      .default(0)
      .describe('Assumed probability that a preference label is flipped (sigmoid and robust losses).'),
    // --- optimisation (HF Trainer semantics, docs/reference/trainer.md, docs/reference/optimizer.md)
    learningRate: z.number().gt(0).max(1).default(2e-4).describe('Peak learning rate of the linear schedule.'),
    batchSize: z
      .number()
      .int()
      .min(1)
      .max(64)
      .default(1)
      .describe('Pairs per micro-batch (per_device_train_batch_size).'),
    gradAccum: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .default(8)
      .describe('Micro-batches per optimizer step (gradient_accumulation_steps).'),
    warmupRatio: z
      .number()
      .min(0)
      .max(1)
      .default(0.1)
      .describe('Fraction of the steps spent warming the learning rate up from 0.'),
    maxGradNorm: z
      .number()
      .min(0)
      .max(1000)
      .default(1.0)
      .describe('Clip the global gradient norm to this value (0 turns clipping off).'),
    optim: z
      .enum(OPTIMIZERS)
      .default('paged_adamw_8bit')
      .describe('paged_adamw_8bit = bitsandbytes 8-bit blockwise AdamW (the notebook); adamw = fp32 AdamW.'),
    weightDecay: z.number().min(0).max(1).default(0).describe('Decoupled weight decay (AdamW).'),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1)
      .default(42)
      .describe('Seeds the data order and the LoRA initialisation.'),
    checkpointEvery: z
      .number()
      .int()
      .min(0)
      .max(1_000_000)
      .default(10)
      .describe('Save a resume checkpoint every this many optimizer steps (0 = only when cancelled); docs/resume.md.'),
    // --- LoRA (PEFT semantics, docs/reference/lora.md)
    loraR: z.number().int().min(1).max(1024).default(64).describe('LoRA rank r.'),
    loraAlpha: z.number().gt(0).max(4096).default(16).describe('LoRA alpha; the update is scaled by alpha / r.'),
    loraDropout: z
      .number()
      .min(0)
      .lt(1)
      .default(0.1)
      .describe(
        'Dropout on the LoRA input. TRL disables all dropout during DPO, so it only applies when "disable dropout" is off.',
      ),
    disableDropout: z
      .boolean()
      .default(true)
      .describe("Turn every dropout off during training, as TRL's DPOTrainer does by default."),
    targets: z
      .array(z.enum(LINEAR_TARGETS))
      .min(1)
      .default(['q_proj', 'v_proj'])
      .describe("Which linear layers get LoRA adapters (PEFT's default for Mistral/Llama is q_proj, v_proj)."),
    // --- tokenization (TRL defaults, docs/reference/dpo-data.md#truncation)
    maxLength: z.number().int().min(8).max(32_768).default(512).describe('Longest prompt + answer in tokens.'),
    maxPromptLength: z
      .number()
      .int()
      .min(4)
      .max(32_768)
      .default(128)
      .describe('Longest prompt in tokens (keep_end truncation).'),
    // --- generation and prompts
    maxNewTokens: z.number().int().min(1).max(4096).default(200).describe('Tokens generated per test prompt at most.'),
    systemMessage: z
      .string()
      .max(4000)
      .default(DEFAULT_SYSTEM_MESSAGE)
      .describe('System message put in the chat template of every prompt (the notebook: 回覆請少於20字).'),
    enableThinking: z
      .enum(THINKING_MODES)
      .default('default')
      .describe(
        "Qwen3-style templates: off asks for answers without a <think> block (enable_thinking=False), on passes True, default leaves the template's own default. Templates without enable_thinking ignore it.",
      ),
    chatDate: z
      .union([z.literal(''), z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'Use YYYY-MM-DD')])
      .optional()
      .describe(
        "The date templates that print today's date (Llama 3.1/3.2: strftime_now) get, as YYYY-MM-DD. Empty: the day the run starts, recorded in the run's config so a rerun renders the same prompts.",
      ),
    // --- engine
    quant: z
      .enum(QUANT_MODES)
      .default('nf4')
      .describe('Base weights in 4-bit NF4 with double quantization, or full precision.'),
    backend: z.enum(BACKENDS).default('auto').describe('Where to compute: auto picks the GPU when one is usable.'),
  })
  .refine((p) => p.maxPromptLength < p.maxLength, {
    message: 'maxPromptLength must be smaller than maxLength',
    path: ['maxPromptLength'],
  })

export type TrainParams = z.infer<typeof trainParamsSchema>
export type TrainParamsInput = z.input<typeof trainParamsSchema>

/** Fills defaults and validates; throws a ZodError naming the field. */
export function resolveTrainParams(input: TrainParamsInput = {}): TrainParams {
  return trainParamsSchema.parse(input)
}

export const DEFAULT_TRAIN_PARAMS: TrainParams = resolveTrainParams({})
