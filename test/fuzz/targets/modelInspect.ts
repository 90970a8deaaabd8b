// Fuzz targets for the model panel's reader (src-main/services/models/inspectModel.ts): config.json beside a valid
// model.safetensors, and model.safetensors beside a valid config.json. What it reports must be plain finite numbers
// and strings the panel can show, or an E_BAD_MODEL naming the folder.
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { encodeSafetensors, type NamedTensor } from '../../../src-main/services/training/adapterFiles'
import { inspectModel, type ModelInspection } from '../../../src-main/services/models/inspectModel'
import { repoRoot } from '../../helpers/sharedPath'
import { ensure, readOrRefuse } from '../property'
import type { JsFuzzTarget } from '../jsTarget'

const DEMO_CONFIG = path.join(repoRoot, 'resources', 'demo-model', 'config.json')

/** A one-layer Llama checkpoint, 4 wide, as safetensors. */
function tinyCheckpoint(): Uint8Array {
  const t = (name: string, shape: number[]): NamedTensor => ({
    name,
    shape,
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
  })
  return encodeSafetensors([
    t('model.embed_tokens.weight', [8, 4]),
    t('model.layers.0.self_attn.q_proj.weight', [4, 4]),
    t('model.layers.0.mlp.down_proj.weight', [4, 6]),
    t('model.layers.0.input_layernorm.weight', [4]),
    t('model.norm.weight', [4]),
  ])
}

function checkInspection(m: ModelInspection): void {
  for (const key of ['params', 'checkpointBytes', 'nf4Bytes', 'layers', 'hidden', 'vocab'] as const) {
    const v = m[key]
    ensure(typeof v === 'number' && Number.isFinite(v) && v >= 0, `${key} is ${v}`)
  }
  for (const key of ['architecture', 'modelType', 'dtype', 'note'] as const)
    ensure(typeof m[key] === 'string', `${key} is not a string`)
}

async function inspectChecked(dir: string): Promise<void> {
  await readOrRefuse(() => inspectModel(dir), checkInspection, { codes: ['E_BAD_MODEL'], names: [dir] })
}

const CONFIG_WORDS = [
  'architectures',
  'LlamaForCausalLM',
  'MistralForCausalLM',
  'Qwen2ForCausalLM',
  'model_type',
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'vocab_size',
  'torch_dtype',
  'tie_word_embeddings',
  'quantization_config',
  'load_in_4bit',
  'quant_method',
  'bitsandbytes',
  'bfloat16',
]

export const modelConfigInspect: JsFuzzTarget = {
  name: 'model_config_inspect',
  file: 'config.json as the model panel reads it (beside a valid model.safetensors)',
  kind: 'json',
  seeds(shared) {
    const real = path.join(shared, 'models', 'stories260K', 'config.json')
    return [
      new Uint8Array(readFileSync(DEMO_CONFIG)),
      ...(existsSync(real) ? [new Uint8Array(readFileSync(real))] : []),
    ]
  },
  dictionary: CONFIG_WORDS,
  fragments: [{ load_in_4bit: true, quant_method: 'bitsandbytes' }, ['LlamaForCausalLM']],
  prepare(dir) {
    writeFileSync(path.join(dir, 'model.safetensors'), tinyCheckpoint())
  },
  async run(input, dir) {
    writeFileSync(path.join(dir, 'config.json'), input)
    await inspectChecked(dir)
  },
}

export const modelSafetensorsInspect: JsFuzzTarget = {
  name: 'model_safetensors_inspect',
  file: 'model.safetensors as the model panel reads its header (beside a valid config.json)',
  kind: 'safetensors',
  seeds: () => [tinyCheckpoint()],
  dictionary: [
    '__metadata__',
    'format',
    'dtype',
    'shape',
    'data_offsets',
    'F32',
    'BF16',
    'U8',
    'model.layers.0.mlp.up_proj.weight',
  ],
  fragments: [{ dtype: 'BF16', shape: [4, 4], data_offsets: [0, 32] }, [1e308, 1e308], []],
  prepare(dir) {
    copyFileSync(DEMO_CONFIG, path.join(dir, 'config.json'))
  },
  async run(input, dir) {
    writeFileSync(path.join(dir, 'model.safetensors'), input)
    await inspectChecked(dir)
  },
}
