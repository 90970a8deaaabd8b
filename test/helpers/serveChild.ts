// `dpo-studio serve` as a child process for tests: the real runServe (signals included) with a test data folder and
// a one-page renderer folder (the unit suites run before the renderer is built). Prints the URL on stdout.
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { runServe } from '../../src-main/cli/commands/serve'

const [dataDir, rendererDir] = process.argv.slice(2) as [string, string]
mkdirSync(rendererDir, { recursive: true })
writeFileSync(path.join(rendererDir, 'index.html'), '<!doctype html><title>DPO Studio (test)</title>')
await runServe({ port: 0, dataDir, rendererDir })
