import { LabIcon } from '@jupyterlab/ui-components';

// A tag with a branch: "where did this come from".
const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M6 3a3 3 0 0 1 1 5.83v6.34A3 3 0 1 1 5 15.17V8.83A3 3 0 0 1 6 3zm0 2a1 1 0 1 0 0 2 1 1 0 0 0 0-2zm0 12a1 1 0 1 0 0 2 1 1 0 0 0 0-2z"/>
    <path d="M18 3a3 3 0 0 1 1 5.83V10a4 4 0 0 1-4 4h-4v-2h4a2 2 0 0 0 2-2V8.83A3 3 0 0 1 18 3zm0 2a1 1 0 1 0 0 2 1 1 0 0 0 0-2z"/>
  </g>
</svg>`;

export const llmopsIcon = new LabIcon({ name: 'llmops-magics:icon', svgstr });
