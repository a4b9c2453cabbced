#!/usr/bin/env node
/** The `covidct` executable. */
import './sdk-warning.js';
import { nodeSupportNotice } from './node-support.js';
import { main } from './program.js';

nodeSupportNotice();
process.exitCode = await main(process.argv);
