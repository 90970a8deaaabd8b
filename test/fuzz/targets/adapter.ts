// Fuzz targets for the PEFT adapter reader (src-main/services/training/adapterFiles.ts loadAdapter): its
// adapter_config.json beside a valid adapter_model.safetensors, and its adapter_model.safetensors beside a valid
// adapter_config.json. A loaded adapter must be one the engine can attach: r, alpha, dropout in range, known targets,
// A [r, in] and B [out, r] for every target of every layer.
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  encodeSafetensors,
  loadAdapter,
  loraKey,
  peftConfigObject,
  pythonJsonDumps,
  type LoadedAdapter,
  type NamedTensor,
} from '../../../src-main/services/training/adapterFiles'
import { LINEAR_TARGETS } from '../../../src-shared/params/trainParams'
import { ensure, readOrRefuse } from '../property'
import { text, type JsFuzzTarget } from '../jsTarget'

const R = 2
const WIDTH = 4
const TARGETS = ['q_proj', 'v_proj'] as const

/** A valid two-layer, rank-2 adapter for q_proj and v_proj on a 4-wide model. */
function tinyAdapterTensors(): NamedTensor[] {
  const out: NamedTensor[] = []
  for (let layer = 0; layer < 2; layer++)
    for (const t of TARGETS) {
      out.push({
        name: loraKey(layer, t, 'A'),
        shape: [R, WIDTH],
        data: Float32Array.from({ length: R * WIDTH }, (_, i) => i / 8),
      })
      out.push({ name: loraKey(layer, t, 'B'), shape: [WIDTH, R], data: new Float32Array(WIDTH * R) })
    }
  return out
}

const tinyConfigText = () =>
  pythonJsonDumps(peftConfigObject({ r: R, alpha: 16, dropout: 0.1, targets: [...TARGETS], baseModel: 'tiny' }))

function checkAdapter(a: LoadedAdapter): void {
  const s = a.settings
  ensure(Number.isInteger(s.r) && s.r >= 1, `r ${s.r} accepted`)
  ensure(Number.isFinite(s.alpha) && s.alpha > 0, `lora_alpha resolved to ${s.alpha}`)
  ensure(Number.isFinite(s.dropout) && s.dropout >= 0 && s.dropout < 1, `lora_dropout ${s.dropout} accepted`)
  ensure(
    s.targets.length > 0 && s.targets.every((t) => (LINEAR_TARGETS as readonly string[]).includes(t)),
    'unknown target accepted',
  )
  ensure(new Set(s.targets).size === s.targets.length, `target_modules repeats a module: ${JSON.stringify(s.targets)}`)
  ensure(
    a.layers >= 1 && a.tensors.length === 2 * a.layers * s.targets.length,
    'tensor count does not match layers x targets',
  )
  for (const t of a.tensors) {
    ensure(t.shape.length === 2 && t.data.length === t.shape[0]! * t.shape[1]!, `tensor ${t.name} has a wrong size`)
    ensure(
      t.shape.every((d) => Number.isInteger(d) && d >= 1),
      `tensor ${t.name} has an empty dimension`,
    )
  }
}

const adapterDir = (dir: string) => path.join(dir, 'adapter')

function prepareAdapter(dir: string): void {
  mkdirSync(adapterDir(dir), { recursive: true })
  writeFileSync(path.join(adapterDir(dir), ADAPTER_CONFIG_FILE), tinyConfigText())
  writeFileSync(path.join(adapterDir(dir), ADAPTER_WEIGHTS_FILE), encodeSafetensors(tinyAdapterTensors()))
}

async function loadChecked(dir: string): Promise<void> {
  const at = path.resolve(adapterDir(dir))
  await readOrRefuse(() => loadAdapter(at), checkAdapter, { codes: ['E_BAD_INPUT'], names: [at] })
}

const PEFT_WORDS = [
  'peft_type',
  'LORA',
  'r',
  'lora_alpha',
  'lora_dropout',
  'target_modules',
  'use_rslora',
  'use_dora',
  'bias',
  'none',
  'fan_in_fan_out',
  'modules_to_save',
  'layers_to_transform',
  'rank_pattern',
  'alpha_pattern',
  'layer_replication',
  'base_model_name_or_path',
  'task_type',
  'CAUSAL_LM',
  'all-linear',
  ...LINEAR_TARGETS,
]

export const adapterConfig: JsFuzzTarget = {
  name: 'adapter_config',
  file: 'adapter_config.json of a PEFT LoRA adapter folder',
  kind: 'json',
  seeds: () => [text(tinyConfigText())],
  dictionary: PEFT_WORDS,
  fragments: [['q_proj', 'v_proj'], ['q_proj', 'q_proj', 'v_proj'], { 'model.layers.0.self_attn.q_proj': 8 }],
  prepare: prepareAdapter,
  async run(input, dir) {
    writeFileSync(path.join(adapterDir(dir), ADAPTER_CONFIG_FILE), input)
    await loadChecked(dir)
  },
}

export const adapterWeights: JsFuzzTarget = {
  name: 'adapter_weights',
  file: 'adapter_model.safetensors of a PEFT LoRA adapter folder',
  kind: 'safetensors',
  seeds: () => [encodeSafetensors(tinyAdapterTensors())],
  dictionary: [
    '__metadata__',
    'format',
    'pt',
    'dtype',
    'shape',
    'data_offsets',
    'F32',
    'F16',
    'BF16',
    'I64',
    'lora_A',
    'lora_B',
    'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
    'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight',
  ],
  fragments: [[0, 0], [2, 4], [4, 2], { dtype: 'F16', shape: [2, 4], data_offsets: [0, 16] }],
  prepare(dir) {
    prepareAdapter(dir)
  },
  async run(input, dir) {
    writeFileSync(path.join(adapterDir(dir), ADAPTER_WEIGHTS_FILE), input)
    await loadChecked(dir)
  },
}
