// Lint rules for the JupyterLab extension: the recommended sets of ESLint and
// typescript-eslint; formatting is prettier's job, so its clashing rules are off.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['lib/', 'node_modules/', '../llmops_magics/labextension/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.ts', 'src/**/*.tsx', 'test/**/*.ts'],
    languageOptions: { globals: { ...globals.browser } },
    rules: {
      // Command ids and signals are named by convention, not by this rule.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-console': 'error'
    }
  },
  prettier
);
