// `npm run docs:config`: writes docs/configuration.md from the settings' schemas.
import { writeFileSync } from 'node:fs';
import { renderConfigurationReference } from '../src/config/reference.js';

writeFileSync(new URL('../docs/configuration.md', import.meta.url), renderConfigurationReference());
