// Form fields generated from the one parameter schema (src-shared/params/trainParams.ts): type, default,
// bounds and help text come from zod (via JSON Schema); this file adds only labels, the notebook's names, grouping
// and presets. A field added to the schema appears in the "Other" group without changes here.
import { z } from 'zod'
import { DEMO_PRESET } from '@shared/demo/demoPreset'
import { trainParamsSchema, type TrainParams, type TrainParamsInput } from '@shared/params/trainParams'
import { parseNumberText } from './numberText'

export type ParamKey = keyof TrainParams

export interface ParamField {
  key: ParamKey
  label: string
  /** The name in the HW6 notebook / TRL config. */
  notebookName: string
  group: string
  kind: 'integer' | 'number' | 'enum' | 'boolean' | 'string' | 'multi'
  default: unknown
  min?: number
  max?: number
  exclusiveMin: boolean
  exclusiveMax: boolean
  step: number | 'any'
  options: string[]
  help: string
  /** Ratios (0..1) get a slider beside the number. */
  slider: boolean
}

const META: Record<string, { label: string; nb: string; group: string; step?: number | 'any'; slider?: boolean }> = {
  dataSize: { label: 'Data size', nb: 'data_size', group: 'Data' },
  supportRatio: { label: 'Support ratio', nb: 'support_ratio', group: 'Data', step: 0.01, slider: true },
  epochs: { label: 'Epochs', nb: 'num_epoch', group: 'DPO' },
  beta: { label: 'Beta', nb: 'beta', group: 'DPO', step: 0.01 },
  lossType: { label: 'Loss type', nb: 'loss_type', group: 'DPO' },
  labelSmoothing: { label: 'Label smoothing', nb: 'label_smoothing', group: 'DPO', step: 0.01, slider: true },
  learningRate: { label: 'Learning rate', nb: 'learning_rate', group: 'Optimisation', step: 'any' },
  batchSize: { label: 'Batch size', nb: 'per_device_train_batch_size', group: 'Optimisation' },
  gradAccum: { label: 'Gradient accumulation', nb: 'gradient_accumulation_steps', group: 'Optimisation' },
  warmupRatio: { label: 'Warmup ratio', nb: 'warmup_ratio', group: 'Optimisation', step: 0.01, slider: true },
  maxGradNorm: { label: 'Max grad norm', nb: 'max_grad_norm', group: 'Optimisation', step: 0.1 },
  optim: { label: 'Optimizer', nb: 'optim', group: 'Optimisation' },
  weightDecay: { label: 'Weight decay', nb: 'weight_decay', group: 'Optimisation', step: 0.001 },
  seed: { label: 'Seed', nb: 'seed', group: 'Optimisation' },
  checkpointEvery: { label: 'Checkpoint every (steps)', nb: 'save_steps', group: 'Optimisation' },
  loraR: { label: 'LoRA rank r', nb: 'r', group: 'LoRA' },
  loraAlpha: { label: 'LoRA alpha', nb: 'lora_alpha', group: 'LoRA' },
  loraDropout: { label: 'LoRA dropout', nb: 'lora_dropout', group: 'LoRA', step: 0.01, slider: true },
  disableDropout: { label: 'Disable dropout', nb: 'disable_dropout', group: 'LoRA' },
  targets: { label: 'Target modules', nb: 'target_modules', group: 'LoRA' },
  maxNewTokens: { label: 'Max new tokens', nb: 'max_new_tokens', group: 'Generation' },
  systemMessage: { label: 'System prompt', nb: 'system message', group: 'Generation' },
  enableThinking: { label: 'Thinking (Qwen3)', nb: 'enable_thinking', group: 'Generation' },
  chatDate: { label: 'Template date', nb: 'strftime_now / date_string', group: 'Generation' },
  maxLength: { label: 'Max length', nb: 'max_length', group: 'Tokenization' },
  maxPromptLength: { label: 'Max prompt length', nb: 'max_prompt_length', group: 'Tokenization' },
  quant: { label: 'Base weights', nb: 'load_in_4bit / bnb_4bit_quant_type', group: 'Engine' },
  backend: { label: 'Backend', nb: 'device', group: 'Engine' },
}

export const GROUPS = ['Data', 'DPO', 'Optimisation', 'LoRA', 'Generation', 'Tokenization', 'Engine', 'Other']

interface JsonProp {
  type?: string
  enum?: string[]
  default?: unknown
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  exclusiveMaximum?: number
  description?: string
  items?: { enum?: string[] }
}

function humanize(key: string): string {
  const s = key.replace(/([A-Z])/g, ' $1').toLowerCase()
  return s.charAt(0).toUpperCase() + s.slice(1)
}

export function buildParamFields(): ParamField[] {
  const schema = z.toJSONSchema(trainParamsSchema, { io: 'input' }) as { properties: Record<string, JsonProp> }
  return Object.entries(schema.properties).map(([key, p]) => {
    const meta = META[key]
    const kind: ParamField['kind'] =
      p.type === 'array'
        ? 'multi'
        : p.enum
          ? 'enum'
          : p.type === 'boolean'
            ? 'boolean'
            : p.type === 'integer'
              ? 'integer'
              : p.type === 'number'
                ? 'number'
                : 'string'
    const min = p.minimum ?? p.exclusiveMinimum
    const max = p.maximum ?? p.exclusiveMaximum
    return {
      key: key as ParamKey,
      label: meta?.label ?? humanize(key),
      notebookName: meta?.nb ?? key,
      group: meta?.group ?? 'Other',
      kind,
      default: p.default,
      ...(min !== undefined ? { min } : {}),
      ...(max !== undefined ? { max } : {}),
      exclusiveMin: p.exclusiveMinimum !== undefined,
      exclusiveMax: p.exclusiveMaximum !== undefined,
      step: meta?.step ?? (kind === 'integer' ? 1 : 'any'),
      options: p.enum ?? p.items?.enum ?? [],
      help: p.description ?? '',
      slider: meta?.slider ?? false,
    }
  })
}

export interface ParamPreset {
  id: string
  label: string
  description: string
  values: TrainParamsInput
}

export const PRESETS: ParamPreset[] = [
  {
    id: 'notebook',
    label: 'HW6 notebook',
    description: "The notebook's settings: 50 pairs, support ratio 0.1, 1 epoch, β 0.1, r 64, lr 2e-4.",
    values: {},
  },
  {
    id: 'demo',
    label: 'Demo model',
    description: 'Applied while the built-in demo model is in use: 60 pairs, 4 epochs, lr 2e-3, 48-token answers.',
    values: DEMO_PRESET,
  },
  {
    id: 'quick',
    label: 'Quick look',
    description: 'A small run to see the curves move: 16 pairs, rank 8, short answers.',
    values: { dataSize: 16, loraR: 8, gradAccum: 4, maxNewTokens: 48 },
  },
  {
    id: 'support',
    label: 'Lean to support',
    description: 'Most pairs prefer the "support" answer (support ratio 0.9).',
    values: { supportRatio: 0.9 },
  },
  {
    id: 'stronger',
    label: 'Stronger push',
    description: 'Three epochs at 5e-4: the policy moves further from the reference.',
    values: { epochs: 3, learningRate: 5e-4 },
  },
]

let numericFields: ParamField[] | null = null

/**
 * Issues by field, from the schema's own validation. A number field may hold the text the user typed when it did not
 * parse (AppNumberInput): that is an error of its own, never the default (an emptied field is not "use the default").
 */
export function validateParams(
  values: TrainParamsInput,
): { ok: true; value: TrainParams } | { ok: false; errors: Partial<Record<ParamKey, string>> } {
  numericFields ??= buildParamFields().filter((f) => f.kind === 'integer' || f.kind === 'number')
  const errors: Partial<Record<ParamKey, string>> = {}
  const parsed: Record<string, unknown> = { ...values }
  for (const f of numericFields) {
    const v = parsed[f.key]
    if (typeof v !== 'string') continue
    const p = parseNumberText(v)
    if (p.ok) parsed[f.key] = p.value
    else errors[f.key] = v.trim() === '' ? `${p.error} (default ${String(f.default)})` : p.error
  }
  const r = trainParamsSchema.safeParse(parsed)
  if (r.success && !Object.keys(errors).length) return { ok: true, value: r.data }
  for (const issue of r.success ? [] : r.error.issues) {
    const key = String(issue.path[0] ?? '') as ParamKey
    errors[key] ??= friendly(issue)
  }
  return { ok: false, errors }
}

/** Plain-language validation messages ("Must be at least 1") instead of zod's defaults. */
function friendly(issue: z.core.$ZodIssue): string {
  const i = issue as {
    code: string
    minimum?: number | bigint
    maximum?: number | bigint
    inclusive?: boolean
    expected?: string
    origin?: string
    message: string
  }
  if (i.code === 'too_small' && i.origin === 'array') return 'Pick at least one'
  if (i.code === 'too_small') return `Must be ${i.inclusive ? 'at least' : 'greater than'} ${String(i.minimum)}`
  if (i.code === 'too_big' && i.origin === 'string') return `At most ${String(i.maximum)} characters`
  if (i.code === 'too_big') return `Must be ${i.inclusive ? 'at most' : 'less than'} ${String(i.maximum)}`
  if (i.code === 'invalid_type' && i.expected === 'int') return 'Enter a whole number'
  if (i.code === 'invalid_type' && i.expected === 'number') return 'Enter a number'
  return i.message
}
