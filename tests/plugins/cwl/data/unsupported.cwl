#!/usr/bin/env cwl-runner
# An image built from a Dockerfile cannot be run by a TES server: exit code 33.
cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement:
    dockerFile: |
      FROM alpine
baseCommand: ["true"]
inputs: []
outputs: []
