// The dpo-studio CLI (docs/architecture.md#command-line): generate, logps, train, run and info on the engine, for
// headless GPU servers and for outside checks. Every failure is one line naming the file, field or flag, with a
// non-zero exit.
import { Command, InvalidArgumentError, Option } from 'commander'
import { runExportGguf } from './commands/exportGguf'
import { runExportMerged } from './commands/exportMerged'
import { runExportProject, runImportAdapter } from './commands/exportProject'
import { runGenerate } from './commands/generate'
import { runInfo } from './commands/info'
import { runLogps } from './commands/logps'
import { runRun } from './commands/run'
import { runTrain } from './commands/train'
import { CliExit, RUN_PARAM_FLAGS, TRAIN_PARAM_FLAGS, addParamOptions } from './commands/trainFlags'
import { runServe } from './commands/serve'
import { runSft } from './commands/sft'
import { SWEEP_PARAM_FLAGS, runSweepCommand } from './commands/sweep'
import { addTemplateOptions } from './commands/templateFlags'
import { reportError } from './report'
import {
  BACKENDS,
  DEFAULT_GGUF_FILE_TYPES,
  GGUF_FILE_TYPES,
  MERGE_BASES,
  MERGE_DTYPES,
  QUANT_MODES,
  SFT_ANSWERS,
} from '../../src-shared/params/enumValues'

function positiveInt(flag: string) {
  return (value: string): number => {
    const n = Number(value)
    // 1e12 is an integer too: say "too large" (the model's context caps it later), never "not an integer".
    if (n === Infinity || (Number.isInteger(n) && n > Number.MAX_SAFE_INTEGER))
      throw new InvalidArgumentError(`${flag} is too large, got '${value}'`)
    if (!Number.isInteger(n) || n < 1)
      throw new InvalidArgumentError(`${flag} must be a positive integer, got '${value}'`)
    return n
  }
}

const backendOption = () => new Option('--backend <backend>', 'where to compute').choices(BACKENDS).default('auto')
const quantOption = () =>
  new Option('--quant <quant>', 'base weight format: NF4 + double quant, or full precision')
    .choices(QUANT_MODES)
    .default('nf4')

export function buildProgram(): Command {
  const program = new Command('dpo-studio')
    .description('Preference-tune local language models with 4-bit LoRA DPO')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })

  program
    .command('info')
    .description('engine version and the backends this machine can use')
    .option('--json', 'print JSON')
    .option('--model <dir>', 'also inspect a model folder: shape, size, and whether the engine will load it')
    .action(async (opts) => runInfo(opts))

  const generate = program
    .command('generate')
    .description('greedy answers to test prompts, each wrapped in the chat template with the system message')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option('--adapter <dir>', 'PEFT LoRA adapter directory')
    .requiredOption('--prompts <file>', 'test_prompt.json layout, or JSONL of {id?, prompt}')
    .option('--system <text>', 'system message (default: 回覆請少於20字)')
    .option('--no-template', 'pass prompts through verbatim')
  addTemplateOptions(generate)
    .option('--max-new-tokens <n>', 'tokens to generate at most', positiveInt('--max-new-tokens'), 200)
    .option(
      '--batch-size <n>',
      'prompts decoded together (results are identical for any value)',
      positiveInt('--batch-size'),
      16,
    )
    .addOption(backendOption())
    .addOption(quantOption())
    .requiredOption('--out <file>', 'output JSON [{id, prompt, response}]')
    .action(async (opts) => runGenerate(opts))

  const logps = program
    .command('logps')
    .description('sequence log-probabilities of chosen and rejected answers (TRL masking)')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option('--adapter <dir>', 'PEFT LoRA adapter directory')
    .requiredOption('--pairs <file>', 'JSON/JSONL of {prompt, chosen, rejected}, or the HW6 labelled_data.json')
    .option('--system <text>', 'system message (default: 回覆請少於20字)')
    .option('--no-template', 'pass prompts through verbatim')
  addTemplateOptions(logps)
    .addOption(backendOption())
    .addOption(quantOption())
    .option('--per-token', 'also each answer token: chosen_token_ids / _text / _logps (and rejected_...)', false)
    .requiredOption('--out <file>', 'output JSON [{chosen_logp, rejected_logp, chosen_tokens, rejected_tokens}]')
    .action(async (opts) => runLogps(opts))

  program
    .command('serve')
    .description('the studio in a browser: web host on 127.0.0.1, prints the URL with its access token')
    .option('--port <n>', 'port to listen on (default: a free one)', (v: string) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 0 || n > 65535)
        throw new InvalidArgumentError(`--port must be an integer 0-65535, got '${v}'`)
      return n
    })
    .option(
      '--allow <dir>',
      'also let the browser open files in DIR (repeatable; besides home, the HF cache and $DPO_STUDIO_ROOTS)',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .action(async (opts: { port?: number; allow: string[] }) =>
      runServe({ ...(opts.port !== undefined ? { port: opts.port } : {}), root: opts.allow }),
    )

  program
    .command('sft')
    .description('full-parameter supervised fine-tuning of a small full-precision model on dataset answers')
    .requiredOption('--model <dir>', 'Hugging Face model directory (trained in fp32; meant for small models)')
    .requiredOption('--dataset <path>', 'HW6 folder or labelled_data.json, or TRL JSON/JSONL')
    .addOption(
      new Option('--answers <which>', 'train on the chosen answers only, or on both sides')
        .choices(SFT_ANSWERS)
        .default('chosen'),
    )
    .option('--support-ratio <s>', 'the notebook rule that picks the chosen side (HW6 layout)', Number, 0.1)
    .option('--epochs <n>', 'passes over the examples', positiveInt('--epochs'), 3)
    .option('--batch-size <n>', 'examples per step', positiveInt('--batch-size'), 8)
    .option('--lr <lr>', 'peak learning rate (linear decay)', Number, 1e-4)
    .option('--seed <n>', 'shuffle seed', Number, 42)
    .option('--system <text>', 'system message (default: 回覆請少於20字)')
    .option('--bf16', 'store the trained weights in bf16 (half the size)', false)
    .requiredOption('--out <dir>', 'new model directory')
    .action(async (opts) => runSft(opts))

  // --model, --dataset and --out are required unless --resume names the run (checked in runTrainCommand).
  const train = program
    .command('train')
    .description('train a LoRA adapter with DPO into a run directory (metrics.jsonl, adapter/, train_summary.json)')
    .option('--model <dir>', 'Hugging Face model directory (required)')
    .option(
      '--dataset <path>',
      'HW6 folder or labelled_data.json, or TRL {prompt, chosen, rejected} JSON/JSONL (required)',
    )
  addParamOptions(train, TRAIN_PARAM_FLAGS)
    .option('--init-adapter <dir>', 'continue from this PEFT LoRA adapter instead of a fresh one')
    .option('--out <dir>', 'run directory to create or replace (required)')
    .option(
      '--resume <run_dir>',
      'continue a cancelled, failed or killed run from its last checkpoint (docs/resume.md)',
    )
    .action(async (opts) => runTrain(opts))

  const run = program
    .command('run')
    .description('the whole notebook: original responses, DPO training, trained responses, RUN_DIR/comparison.json')
    .option('--model <dir>', 'Hugging Face model directory (default: the built-in demo model)')
    .option(
      '--dataset <path>',
      'HW6 folder or labelled_data.json, or TRL {prompt, chosen, rejected} JSON/JSONL (default: the sample dataset)',
    )
  addParamOptions(run, TRAIN_PARAM_FLAGS)
    .option('--init-adapter <dir>', 'continue from this PEFT LoRA adapter instead of a fresh one')
    .option(
      '--test-prompts <file>',
      'test_prompt.json layout, or JSONL of {id?, prompt} (default with the sample dataset: its test prompts)',
    )
  addParamOptions(run, RUN_PARAM_FLAGS)
    .option('--out <dir>', 'run directory to create or replace (required)')
    .option(
      '--resume <run_dir>',
      'continue a stopped run: training from its last checkpoint, then its remaining phases',
    )
    .action(async (opts) => runRun(opts))

  program
    .command('export-merged')
    .description("fold a run's LoRA adapter into its base model: a Hugging Face model folder (docs/exports.md)")
    .argument('[run_dir]', 'run directory (its model and adapter)')
    .option('--model <dir>', 'base model folder (instead of RUN_DIR)')
    .option('--adapter <dir>', 'PEFT LoRA adapter folder (with --model; without it the base alone is written)')
    .addOption(new Option('--dtype <dtype>', "weight dtype (default: the base model's)").choices(MERGE_DTYPES))
    .addOption(
      new Option(
        '--merge-into <base>',
        "fold into the original weights or the 4-bit NF4 base the run trained on (auto: the run's)",
      )
        .choices(MERGE_BASES)
        .default('auto'),
    )
    .option('--overwrite', 'replace an earlier merged export in --out', false)
    .requiredOption('--out <dir>', 'new folder (or an earlier merged export with --overwrite)')
    .action(async (runDir: string | undefined, opts) => runExportMerged(runDir, opts))

  program
    .command('export-gguf')
    .description('the merged model as GGUF for llama.cpp / Ollama / LM Studio, the adapter as a GGUF LoRA, a Modelfile')
    .argument('[run_dir]', 'run directory (its model and adapter)')
    .option('--model <dir>', 'base model folder (instead of RUN_DIR)')
    .option('--adapter <dir>', 'PEFT LoRA adapter folder (with --model)')
    .option(
      '--types <list>',
      `model files to write, comma-separated: ${GGUF_FILE_TYPES.join(', ')}`,
      DEFAULT_GGUF_FILE_TYPES.join(','),
    )
    .option('--no-lora', 'do not write the adapter as a GGUF LoRA adapter')
    .option(
      '--base [type]',
      'also write the base model (without the adapter), F16 unless a type is given, to apply the LoRA GGUF to',
    )
    .addOption(
      new Option(
        '--merge-into <base>',
        "fold into the original weights or the 4-bit NF4 base the run trained on (auto: the run's)",
      )
        .choices(MERGE_BASES)
        .default('auto'),
    )
    .option('--system <text>', "SYSTEM of the Modelfile (default: the run's system message)")
    .option('--overwrite', 'replace an earlier GGUF export in --out', false)
    .requiredOption('--out <dir>', 'new folder (or an earlier GGUF export with --overwrite)')
    .action(async (runDir: string | undefined, opts) => runExportGguf(runDir, opts))

  program
    .command('export-project')
    .description("the run as a Python project for TRL's DPOTrainer + PEFT under accelerate (one GPU, N GPUs, clusters)")
    .argument('<run_dir>', 'run directory')
    .option(
      '--gpus <n>',
      'GPUs of accelerate/single_node.yaml (default: 8, 4, 2 or 1, whichever shares a step evenly)',
      positiveInt('--gpus'),
    )
    .option('--overwrite', 'replace an earlier project export in --out', false)
    .requiredOption('--out <dir>', 'new folder (or an earlier project export with --overwrite)')
    .action(async (runDir: string, opts) => runExportProject(runDir, opts))

  program
    .command('import-adapter')
    .description(
      'an adapter trained elsewhere (e.g. by an exported project) as a new run: answers before and after, comparison',
    )
    .argument('<adapter_dir>', 'PEFT LoRA adapter folder (outputs/adapter of an exported project)')
    .requiredOption('--run <dir>', 'the run it repeats: model, parameters, test prompts, original answers')
    .option('--test-prompts <file>', "test prompts (default: the run's)")
    .addOption(new Option('--backend <backend>', "where to compute (default: the run's)").choices(BACKENDS))
    .option('--overwrite', 'replace an earlier import in --out', false)
    .requiredOption('--out <dir>', 'new run directory')
    .action(async (adapterDir: string, opts) => runImportAdapter(adapterDir, opts))
  const sweep = program
    .command('sweep')
    .description(
      'one run per support_ratio (shared model and reference cache), then DIR/sweep.json: stance against ratio',
    )
    .option('--support-ratio <list>', 'comma-separated ratios in [0, 1] (default: 0,0.25,0.5,0.75,1)')
    .option('--model <dir>', 'Hugging Face model directory (default: the built-in demo model)')
    .option('--dataset <path>', 'HW6 folder or labelled_data.json (default: the sample dataset)')
    .option(
      '--test-prompts <file>',
      'test_prompt.json layout, or JSONL of {id?, prompt} (default with the sample dataset: its test prompts)',
    )
  addParamOptions(sweep, SWEEP_PARAM_FLAGS)
    .option('--out <dir>', 'sweep folder: sweep.json and one run directory per ratio (required)')
    .action(async (opts) => runSweepCommand(opts))

  return program
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' })
    return 0
  } catch (e) {
    // A clean stop (Ctrl-C during train/run) is not an error: say what was kept, exit 130.
    if (e instanceof CliExit) {
      process.stderr.write(`dpo-studio: ${e.message}\n`)
      return e.exitCode
    }
    return reportError(e)
  }
}

const isEntry = process.argv[1] && /(?:main\.ts|dpo-studio(?:\.mjs)?)$/.test(process.argv[1])
if (isEntry) process.exitCode = await main(process.argv.slice(2))
