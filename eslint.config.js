// ESLint (flat config): the recommended rules of ESLint, typescript-eslint and eslint-plugin-vue, plus the
// type-aware promise rules that catch real bugs; eslint-config-prettier last, so layout is Prettier's alone.
// What each rule set is for and why some rules are off: docs/architecture.md ("Lint and format").
import js from '@eslint/js'
import prettier from 'eslint-config-prettier'
import { defineConfig, globalIgnores } from 'eslint/config'
import pluginVue from 'eslint-plugin-vue'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default defineConfig([
  globalIgnores([
    'out/',
    'build/',
    'dist/',
    'native/',
    'resources/',
    'runs/',
    'test-results/',
    '.cuda-toolkit/',
    '.refstack/',
    '.gpu/',
  ]),
  js.configs.recommended,
  tseslint.configs.recommended,
  pluginVue.configs['flat/recommended'],
  {
    languageOptions: {
      globals: { ...globals.node, ...globals.browser },
      parserOptions: {
        // Type information for the promise rules below; files outside tsconfig.json get the default project.
        projectService: { allowDefaultProject: ['*.js', '*.mjs', 'bin/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
        extraFileExtensions: ['.vue'],
      },
    },
  },
  {
    files: ['**/*.vue'],
    languageOptions: { parserOptions: { parser: tseslint.parser } },
  },
  {
    rules: {
      // A promise nobody awaits or catches loses its rejection (an unhandled rejection ends the Node process).
      '@typescript-eslint/no-floating-promises': 'error',
      // Awaiting a non-promise is almost always a missing call or a wrong type.
      '@typescript-eslint/await-thenable': 'error',
      // An async function where a void callback is expected drops its rejection (the attribute form is Vue's
      // handlers, which Vue itself awaits and reports, so only arguments and returns are checked).
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { attributes: false } }],
      // `_`-prefixed names are deliberately unused (a callback's position, a destructured field left out).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true },
      ],
    },
  },
  {
    // Test helpers hand back free-form JSON and protocol frames (webClient events, safetensors headers) that each
    // test reads field by field; the assertions are the type check there. The application code keeps the rule.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  prettier,
])
