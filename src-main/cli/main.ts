// The dpo-studio CLI (architecture.md §3): generate, logps and info on the engine, for headless GPU servers and
// for outside checks. Every failure is one line naming the file, field or flag, with a non-zero exit.
import { Command, InvalidArgumentError, Option } from 'commander'
import { runGenerate } from './commands/generate'
import { runInfo } from './commands/info'
import { runLogps } from './commands/logps'
import { reportError } from './report'

function positiveInt(flag: string) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} must be a positive integer, got '${value}'`)
    return n
  }
}

const backendOption = () =>
  new Option('--backend <backend>', 'where to compute').choices(['auto', 'cpu', 'cuda']).default('auto')
const quantOption = () =>
  new Option('--quant <quant>', 'base weight format: NF4 + double quant, or full precision').choices(['nf4', 'none']).default('nf4')

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
    .action(async (opts) => runInfo(opts))

  program
    .command('generate')
    .description('greedy answers to test prompts, each wrapped in the chat template with the system message')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option('--adapter <dir>', 'PEFT LoRA adapter directory')
    .requiredOption('--prompts <file>', 'test_prompt.json layout, or JSONL of {id?, prompt}')
    .option('--system <text>', 'system message (default: 回覆請少於20字)')
    .option('--no-template', 'pass prompts through verbatim')
    .option('--max-new-tokens <n>', 'tokens to generate at most', positiveInt('--max-new-tokens'), 200)
    .option('--batch-size <n>', 'prompts decoded together (results are identical for any value)', positiveInt('--batch-size'), 16)
    .addOption(backendOption())
    .addOption(quantOption())
    .requiredOption('--out <file>', 'output JSON [{id, prompt, response}]')
    .action(async (opts) => runGenerate(opts))

  program
    .command('logps')
    .description('sequence log-probabilities of chosen and rejected answers (TRL masking)')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option('--adapter <dir>', 'PEFT LoRA adapter directory')
    .requiredOption('--pairs <file>', 'JSON/JSONL of {prompt, chosen, rejected}, or the HW6 labelled_data.json')
    .option('--system <text>', 'system message (default: 回覆請少於20字)')
    .option('--no-template', 'pass prompts through verbatim')
    .addOption(backendOption())
    .addOption(quantOption())
    .requiredOption('--out <file>', 'output JSON [{chosen_logp, rejected_logp, chosen_tokens, rejected_tokens}]')
    .action(async (opts) => runLogps(opts))

  for (const name of ['train', 'run', 'serve']) {
    program
      .command(name, { hidden: true })
      .allowUnknownOption()
      .action(() => {
        throw Object.assign(new Error(`'dpo-studio ${name}' is not available in this version yet`), { code: 'E_BAD_ARGS' })
      })
  }
  return program
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' })
    return 0
  } catch (e) {
    return reportError(e)
  }
}

const isEntry = process.argv[1] && /(?:main\.ts|dpo-studio(?:\.mjs)?)$/.test(process.argv[1])
if (isEntry) process.exitCode = await main(process.argv.slice(2))
