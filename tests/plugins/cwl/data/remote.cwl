#!/usr/bin/env cwl-runner
# A File input with an http:// location: the TES worker fetches it.
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [cat]
inputs:
  page: {type: File, inputBinding: {position: 1}}
stdout: page.txt
outputs:
  copy: {type: stdout}
