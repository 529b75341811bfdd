/**
 * The one MLflow link state of the page. The MIME renderer (loaded as a separate
 * mimeExtension, which cannot ask for plugin tokens) and the panel plugin share it
 * through this module: both entry points live in one federated container.
 */
import { MlflowLinks } from './model';

export const mlflowLinks = new MlflowLinks();
