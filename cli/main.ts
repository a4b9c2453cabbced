#!/usr/bin/env node
/** The `covidct` executable. */
import './sdk-warning.js';
import { main } from './program.js';

process.exitCode = await main(process.argv);
