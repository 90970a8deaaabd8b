// `dpo-studio export-merged`: base + adapter folded into a plain Hugging Face model folder (docs/exports.md):
// safetensors in the base's dtype, config.json, generation_config.json, the tokenizer files and a model card, loadable
// by transformers (AutoModelForCausalLM.from_pretrained) and by our engine without the adapter.
import { chmodSync, copyFileSync, existsSync, writeFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { StudioError } from '../errors'
import { loadAdapter, type LoadedAdapter } from '../training/adapterFiles'
import { HfCheckpoint } from './hfCheckpoint'
import { DTYPE_NAMES, MergedWeights, checkpointDtype, type MergeBase, type OutputDtype } from './mergedWeights'
import { writeExportFolder } from './exportFolder'
import { readRunConfig } from './runConfig'
import { writeSafetensors, DEFAULT_SHARD_BYTES } from './safetensorsWriter'

/** Tokenizer and template files a model folder may carry, copied as they are. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'added_tokens.json',
  'chat_template.jinja',
  'chat_template.json',
  'vocab.json',
  'merges.txt',
]

export interface MergedExportRequest {
  modelDir: string
  /** PEFT adapter folder; null exports the base alone (e.g. the base GGUF a LoRA GGUF applies to). */
  adapterDir: string | null
  mergeBase: MergeBase
  /** Output dtype; default the base's. */
  dtype?: OutputDtype
  outDir: string
  overwrite?: boolean
  /** The run the adapter came from (recorded in the marker and the model card). */
  runDir?: string
  shardBytes?: number
  onProgress?: (fraction: number) => void
}

export interface MergedExportResult {
  path: string
  files: string[]
  dtype: OutputDtype
  mergeBase: MergeBase
  tensors: number
  mergedTensors: number
}

/** The folders a model export reads, which its target may not be, lie in or hold (exportFolder.ts). */
export function exportInputs(modelDir: string, adapterDir: string | null): string[] {
  return adapterDir ? [modelDir, adapterDir] : [modelDir]
}

/** Opens the base and the adapter and checks that they fit, before anything is written. */
export function openMerge(
  modelDir: string,
  adapterDir: string | null,
  mergeBase: MergeBase,
  dtype?: OutputDtype,
): MergedWeights {
  const ckpt = HfCheckpoint.open(modelDir)
  const adapter: LoadedAdapter | null = adapterDir ? loadAdapter(adapterDir) : null
  return new MergedWeights(ckpt, adapter, mergeBase, dtype ?? checkpointDtype(ckpt))
}

export async function exportMergedModel(req: MergedExportRequest): Promise<MergedExportResult> {
  const merged = openMerge(req.modelDir, req.adapterDir, req.mergeBase, req.dtype)
  try {
    const names = merged.names()
    const planned = names.map((name) => {
      const t = merged.info(name)
      const float = t.dtype === 'F32' || t.dtype === 'BF16' || t.dtype === 'F16'
      return { name, dtype: float ? merged.dtype : t.dtype, shape: t.shape }
    })
    const files = await writeExportFolder(
      req.outDir,
      'merged-model',
      req.overwrite ?? false,
      markerFor(req, merged),
      (tmp) => {
        const written = writeSafetensors(
          tmp,
          planned,
          (n) => merged.encoded(n),
          req.shardBytes ?? DEFAULT_SHARD_BYTES,
          (d, total) => req.onProgress?.(d / total),
        )
        written.push(...writeModelFiles(tmp, merged, req))
        return written.map((f) => join(resolve(req.outDir), basename(f)))
      },
      exportInputs(req.modelDir, req.adapterDir),
    )
    return {
      path: resolve(req.outDir),
      files,
      dtype: merged.dtype,
      mergeBase: merged.base,
      tensors: names.length,
      mergedTensors: names.filter((n) => merged.changed(n)).length,
    }
  } finally {
    merged.ckpt.close()
  }
}

function markerFor(req: MergedExportRequest, merged: MergedWeights): Record<string, unknown> {
  return {
    base_model: resolve(req.modelDir),
    adapter: req.adapterDir ? resolve(req.adapterDir) : null,
    run: req.runDir ? resolve(req.runDir) : null,
    merge_base: merged.base,
    dtype: DTYPE_NAMES[merged.dtype],
    lora: merged.adapter
      ? { r: merged.rank, alpha: merged.adapter.settings.alpha, targets: merged.adapter.settings.targets }
      : null,
  }
}

/** config.json (dtype updated, no quantization_config), generation_config.json, the tokenizer files, README.md. */
function writeModelFiles(dir: string, merged: MergedWeights, req: MergedExportRequest): string[] {
  const src = merged.ckpt.dir
  const config: Record<string, unknown> = { ...merged.ckpt.config }
  delete config.quantization_config
  if ('dtype' in config) config.dtype = DTYPE_NAMES[merged.dtype]
  config.torch_dtype = DTYPE_NAMES[merged.dtype]
  const out: string[] = []
  const write = (name: string, text: string) => {
    writeFileSync(join(dir, name), text)
    out.push(join(dir, name))
  }
  write('config.json', JSON.stringify(config, null, 2) + '\n')
  if (existsSync(join(src, 'generation_config.json'))) {
    copyWritable(join(src, 'generation_config.json'), join(dir, 'generation_config.json'))
    out.push(join(dir, 'generation_config.json'))
  } else {
    const gen: Record<string, unknown> = {}
    for (const k of ['bos_token_id', 'eos_token_id', 'pad_token_id']) if (config[k] !== undefined) gen[k] = config[k]
    write('generation_config.json', JSON.stringify(gen, null, 2) + '\n')
  }
  for (const f of TOKENIZER_FILES) {
    if (!existsSync(join(src, f))) continue
    copyWritable(join(src, f), join(dir, f))
    out.push(join(dir, f))
  }
  if (!existsSync(join(src, 'tokenizer.json')) && !existsSync(join(src, 'tokenizer.model'))) {
    throw new StudioError(
      'E_BAD_MODEL',
      `${src} has no tokenizer.json or tokenizer.model to put beside the merged weights`,
    )
  }
  write('README.md', modelCard(merged, req))
  return out
}

/** A copy the user owns (a model in a read-only cache must not make the export read-only). */
export function copyWritable(from: string, to: string): void {
  copyFileSync(from, to)
  chmodSync(to, 0o644)
}

function modelCard(merged: MergedWeights, req: MergedExportRequest): string {
  const a = merged.adapter?.settings
  const base =
    merged.base === 'nf4'
      ? 'the 4-bit NF4 base the run trained on, dequantized (every quantized linear holds the values the 4-bit path computed with), plus the adapter'
      : "the base model's own weights plus the adapter"
  return [
    `# ${basename(resolve(req.outDir))}`,
    '',
    'A merged model exported by DPO Studio: a LoRA adapter folded into its base model, so that it loads and runs',
    'without PEFT.',
    '',
    `- base model: \`${resolve(req.modelDir)}\``,
    `- adapter: ${req.adapterDir ? `\`${resolve(req.adapterDir)}\`` : 'none (the base model alone)'}`,
    ...(req.runDir ? [`- run: \`${resolve(req.runDir)}\``] : []),
    ...(a ? [`- LoRA: r ${a.r}, alpha ${a.alpha}, targets ${a.targets.join(', ')}; W' = W + (alpha / r) B A`] : []),
    `- merged into: ${base}`,
    `- weights: ${DTYPE_NAMES[merged.dtype]}`,
    '',
    '```python',
    'from transformers import AutoModelForCausalLM, AutoTokenizer',
    `model = AutoModelForCausalLM.from_pretrained("${basename(resolve(req.outDir))}")`,
    `tokenizer = AutoTokenizer.from_pretrained("${basename(resolve(req.outDir))}")`,
    '```',
    '',
  ].join('\n')
}

/** What a run directory says about its model and adapter: the model folder and the base the adapter trained on. */
export function runModelAndAdapter(runDir: string): { modelDir: string; adapterDir: string; mergeBase: MergeBase } {
  const { dir, raw, params } = readRunConfig(runDir)
  const adapterDir = join(dir, 'adapter')
  if (!existsSync(join(adapterDir, 'adapter_config.json')))
    throw new StudioError('E_BAD_INPUT', `run ${basename(dir)} has no adapter (it has not finished a training step)`)
  return { modelDir: raw.model_dir, adapterDir, mergeBase: params.quant === 'nf4' ? 'nf4' : 'original' }
}
