#!/usr/bin/env node
// The dpo-studio command: runs the TypeScript CLI (src-main/cli/main.ts) through tsx's ESM loader.
import { register } from 'tsx/esm/api'

register()
await import('../src-main/cli/main.ts')
