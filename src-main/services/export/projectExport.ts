// `dpo-studio export-project`: a run as a Python project that repeats it with TRL's DPOTrainer + PEFT (+ bitsandbytes
// 4-bit for NF4 runs) under accelerate, on one GPU, N GPUs or a cluster (docs/exports.md, "Project"). The project
// carries the pairs after the run's pair rule in TRL's preference format (prompt/chosen/rejected text, plus the run's
// token ids under the names TRL's tokenization gives them), the run's step plan, its hyperparameters, chat template
// and system message, pinned requirements, accelerate configs and a README; resources/project-template/ holds the
// files that do not depend on the run.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { appRoot } from '../../addon/loadAddon'
import { loadPreferenceData, preferencePairs } from '../data/preferenceFile'
import { promptText } from '../session/promptText'
import { StudioError } from '../errors'
import type { TrainParams } from '../../../src-shared/params/trainParams'
import { pickChatTemplate } from '../tokenizer/chatTemplate'
import { TextTokenizer } from '../tokenizer/textTokenizer'
import { sha256File } from '../training/modelFiles'
import { planSchedule } from '../training/schedule'
import { tokenizeTrainingPair } from '../training/tokenizePair'
import { writeExportFolder } from './exportFolder'
import { readRunConfig } from './runConfig'

export const PROJECT_TEMPLATE_DIR = join(appRoot(), 'resources', 'project-template')

export interface ProjectExportRequest {
  runDir: string
  outDir: string
  /** GPUs of the single-machine accelerate config; default the most of 8, 4, 2, 1 that shares a step evenly. */
  gpus?: number
  overwrite?: boolean
}

export interface ProjectExportResult {
  path: string
  files: string[]
  pairs: number
  steps: number
  microBatchesPerStep: number
  gpus: number
}

/** Our optimizer names -> TrainingArguments.optim. */
const OPTIM: Record<TrainParams['optim'], string> = { adamw: 'adamw_torch', paged_adamw_8bit: 'paged_adamw_8bit' }

export async function exportProject(req: ProjectExportRequest): Promise<ProjectExportResult> {
  const { dir: runDir, raw: run, params } = readRunConfig(req.runDir)
  const datasetPath = run.dataset?.path
  if (!datasetPath || !existsSync(datasetPath)) {
    throw new StudioError(
      'E_BAD_INPUT',
      `the run's dataset ${datasetPath ?? '(not recorded)'} is not there any more; the project needs its pairs`,
    )
  }
  const data = await loadPreferenceData(datasetPath)
  if (run.dataset?.sha256 && sha256File(data.file) !== run.dataset.sha256) {
    throw new StudioError(
      'E_BAD_INPUT',
      `${data.file} changed since the run (its sha256 differs); the project would not repeat the run`,
    )
  }
  const pairs = preferencePairs(data, { dataSize: params.dataSize, supportRatio: params.supportRatio })
  const tok = await TextTokenizer.fromDir(run.model_dir)

  // The pairs as the run tokenized them; TRL keeps one prompt per pair, so both sides' prompt parts must agree.
  const rows = pairs.map((pair) => {
    const t = tokenizeTrainingPair(tok, pair, params)
    const n = t.chosen.promptLength
    const prompt = t.chosen.ids.slice(0, n)
    if (t.rejected.promptLength !== n || t.rejected.ids.slice(0, n).some((id, i) => id !== prompt[i])) {
      throw new StudioError(
        'E_BAD_INPUT',
        `pair ${String(pair.id)}: its chosen and rejected sides tokenize the prompt differently (TRL 0.9 splits each side on its own); TRL's preference format holds one prompt per pair`,
      )
    }
    return {
      id: pair.id,
      prompt: promptText(tok, pair.prompt, { system: params.systemMessage }),
      chosen: pair.chosen,
      rejected: pair.rejected,
      prompt_ids: prompt,
      chosen_ids: t.chosen.ids.slice(n),
      rejected_ids: t.rejected.ids.slice(n),
    }
  })
  const plan = planSchedule({
    numPairs: pairs.length,
    batchSize: params.batchSize,
    gradAccum: params.gradAccum,
    epochs: params.epochs,
    warmupRatio: params.warmupRatio,
    learningRate: params.learningRate,
    seed: params.seed,
  })
  const steps = plan.plan.map((s) => s.microBatches.map((mb) => mb.pairs))
  const perStep = steps[0]?.length ?? 1
  const gpus = req.gpus ?? [8, 4, 2, 1].find((g) => perStep % g === 0)!
  if (!Number.isInteger(gpus) || gpus < 1)
    throw new StudioError('E_BAD_INPUT', `--gpus must be a positive integer, got ${gpus}`)
  if (perStep % gpus !== 0) {
    throw new StudioError(
      'E_BAD_INPUT',
      `the run's steps have ${perStep} micro-batches each, which ${gpus} GPUs cannot share evenly; choose a divisor of ${perStep}`,
    )
  }
  const template = pickChatTemplate(tok.chatTemplateSource)
  const config = {
    source_run: runDir,
    model: {
      path: resolve(run.model_dir),
      name: run.base_model ?? basename(run.model_dir),
      quant: params.quant,
      dtype: 'float32',
    },
    params,
    optim: OPTIM[params.optim],
    schedule: {
      steps: plan.steps,
      max_steps: plan.maxSteps,
      warmup_steps: plan.warmupSteps,
      micro_batches_per_step: perStep,
    },
    prompt_mode: template ? 'chat template' : 'plain text after BOS (the model has no chat template)',
    system_message: params.systemMessage,
  }

  const files: string[] = []
  await writeExportFolder(
    req.outDir,
    'project',
    req.overwrite ?? false,
    { run: runDir, pairs: rows.length, steps: plan.steps },
    (tmp) => {
      const put = (name: string, text: string) => {
        mkdirSync(join(tmp, name, '..'), { recursive: true })
        writeFileSync(join(tmp, name), text)
        files.push(join(resolve(req.outDir), name))
      }
      mkdirSync(join(tmp, 'accelerate'), { recursive: true })
      for (const f of ['train.py', 'requirements.txt', 'accelerate/deepspeed_zero3.yaml', 'accelerate/fsdp.yaml']) {
        copyFileSync(join(PROJECT_TEMPLATE_DIR, f), join(tmp, f))
        files.push(join(resolve(req.outDir), f))
      }
      put(
        'accelerate/single_node.yaml',
        readFileSync(join(PROJECT_TEMPLATE_DIR, 'accelerate/single_node.yaml'), 'utf8').replaceAll(
          'NUM_GPUS',
          String(gpus),
        ),
      )
      put('run_config.json', JSON.stringify(config, null, 2) + '\n')
      put('data/train.jsonl', rows.map((r) => JSON.stringify(r)).join('\n') + '\n')
      put('data/steps.json', JSON.stringify(steps) + '\n')
      if (template) put('chat_template.jinja', template)
      put(
        'README.md',
        projectReadme({
          runDir,
          params,
          rows: rows.length,
          steps: plan.steps,
          perStep,
          gpus,
          model: config.model,
          hasTemplate: template !== null,
        }),
      )
    },
    [run.model_dir, dirname(data.file)],
  )
  return { path: resolve(req.outDir), files, pairs: rows.length, steps: plan.steps, microBatchesPerStep: perStep, gpus }
}

interface ReadmeFacts {
  runDir: string
  params: TrainParams
  rows: number
  steps: number
  perStep: number
  gpus: number
  model: { path: string; name: string; quant: string }
  hasTemplate: boolean
}

function projectReadme(f: ReadmeFacts): string {
  const p = f.params
  const divisors = [1, 2, 4, 8, 16, 32, 64].filter((g) => f.perStep % g === 0)
  return `# DPO project exported from DPO Studio

This folder repeats the DPO Studio run \`${f.runDir}\` with the standard stack: TRL's \`DPOTrainer\`, PEFT LoRA${p.quant === 'nf4' ? ', bitsandbytes 4-bit (NF4, double quantization)' : ''} and
\`accelerate\`, on one GPU, several GPUs or several machines. Bring the adapter it produces back into DPO Studio to
compare answers before and after.

- model: \`${f.model.path}\` (${f.model.name}), ${p.quant === 'nf4' ? 'loaded in 4-bit NF4 as the run did' : 'full precision (fp32, as the run computed)'}
- data: ${f.rows} pairs after the run's pair rule (data_size ${p.dataSize}, support_ratio ${p.supportRatio}), \`data/train.jsonl\`
- ${f.steps} optimizer steps of ${f.perStep} micro-batches of ${p.batchSize} pair(s), \`data/steps.json\`
- DPO: ${p.lossType} loss, beta ${p.beta}, label smoothing ${p.labelSmoothing}; LoRA r ${p.loraR}, alpha ${p.loraAlpha}, targets ${p.targets.join(', ')}
- optimizer: ${OPTIM[p.optim]}, lr ${p.learningRate}, linear schedule with warmup ratio ${p.warmupRatio}, max grad norm ${p.maxGradNorm}, seed ${p.seed}
- prompts: ${f.hasTemplate ? `the model's chat template (\`chat_template.jinja\`) with the system message "${p.systemMessage}"` : 'plain text after BOS (the model has no chat template)'}

## Run it

\`\`\`bash
python -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt
# one GPU
python train.py
# one machine, ${f.gpus} GPUs (data parallel; edit num_processes in the file for another count: ${divisors.join(', ')})
accelerate launch --config_file accelerate/single_node.yaml train.py
# several machines: fill in accelerate/deepspeed_zero3.yaml or accelerate/fsdp.yaml, then on every machine
accelerate launch --config_file accelerate/deepspeed_zero3.yaml train.py
# anywhere without a GPU (slow; how DPO Studio's own tests run it)
accelerate launch --cpu --num_processes 2 train.py
\`\`\`

\`--model PATH_OR_HUB_ID\` points at the model on the cluster (default the path above). The adapter and
\`metrics.jsonl\` (one line per step, TRL's names) land in \`outputs/\`; then, on the DPO Studio machine:

\`\`\`bash
dpo-studio import-adapter outputs/adapter --run ${f.runDir} --out runs/from-cluster
\`\`\`

which makes a run directory with the adapter, the trained answers and the before/after comparison (the app's
History lists it; its Export view has the same button).

## How it repeats the run (and how to change that)

DPO Studio trains with TRL 0.9's semantics (the notebook's stack); this project runs current TRL. Three choices in
\`train.py\` (class \`StudioDPOTrainer\`) make current TRL compute what the run computed:

| what | the run (TRL 0.9) | current TRL by default | here |
| --- | --- | --- | --- |
| tokenization | one BOS, prompt cut to max_prompt_length ${p.maxPromptLength} from the left, max_length ${p.maxLength} | \`tokenizer(prompt)\` adds a second BOS to a templated prompt; max_length 1024 keep_start | the run's ids (\`prompt_ids\`, \`chosen_ids\`, \`rejected_ids\`, TRL's own column names); \`--tokenization trl\` lets TRL tokenize the text columns |
| data order | the run's permutation per epoch, micro-batches carried across epochs | a random sampler of its own | the run's micro-batches (\`data/steps.json\`), shared round-robin by the processes; \`--order shuffle\` for TRL's sampler |
| loss scaling | every micro-batch loss / gradient_accumulation_steps (${p.gradAccum}) | a short last step is averaged over its own micro-batches | / ${p.gradAccum} always (per process ${p.gradAccum} / number of processes; DDP averages) |

Also set to the run's values: the LoRA initialisation (\`torch.manual_seed(seed)\` right before \`get_peft_model\`: A
drawn as the run drew it, B = 0), dropout off (TRL's \`disable_dropout\`), the reference model = the adapter disabled,
AdamW betas (0.9, 0.999), eps 1e-8 (${p.optim === 'adamw' ? 'fp32 states' : "bitsandbytes' 8-bit paged states"})${p.quant === 'nf4' ? ", and the notebook's 4-bit load (weights cast to fp16, NF4 + double quantization, bf16 compute; `prepare_model_for_kbit_training` casts the rest to fp32)" : ''}.
Logged differently (the numbers trained are the same): current TRL logs the unrounded mean loss and the learning rate
a step used; the run logged the loss rounded to 4 decimals and the next step's rate.

## 4-bit on many GPUs

FSDP and ZeRO-3 shard parameters of one dtype; bitsandbytes' 4-bit weights are uint8 by default. With
\`--quant-storage bfloat16\` they are stored in bf16 containers (the same 4-bit numbers), which both can shard.

## Files

\`train.py\` the training script · \`run_config.json\` every setting of the run · \`data/\` pairs and step plan ·
\`chat_template.jinja\` the template · \`requirements.txt\` pinned versions · \`accelerate/\` launch configs.
`
}
